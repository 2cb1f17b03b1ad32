/*
 * scan/attachments.ts: the attachment policy, a MIME walker listener.
 *
 * Refuses a message with a part whose file name ends in a blocked extension
 * (the last one counts, so `invoice.pdf.exe` is an .exe; trailing dots and
 * spaces, which Windows drops, are dropped first), whose name hides its real
 * extension with bidirectional or invisible characters (`invoice‮fdp.exe`),
 * or whose media type is blocked. Names come decoded from RFC 2231 and RFC 2047
 * forms (scan/header-fields.ts), so encoding a name does not get it past.
 *
 * Must never: echo an unclean file name into a reply or the log (printable
 * ASCII only, shortened). Built per message by scan/build.ts.
 */
import type { MimeListener, PartInfo } from './mime.ts';
import type { Verdict } from './pipeline.ts';

export type AttachmentPolicy = {
  /** Lower-case extensions without the dot. */
  blockedExtensions: readonly string[];
  /** Lower-case media types; `type/*` blocks a whole top-level type. */
  blockedTypes: readonly string[];
};

/** Executables, scripts, installers, shortcuts and disk images: what mail-borne malware arrives as. */
export const DEFAULT_BLOCKED_EXTENSIONS = [
  'ade', 'adp', 'app', 'appx', 'appxbundle', 'bas', 'bat', 'cab', 'chm', 'cmd', 'com', 'cpl', 'crt', 'dll', 'exe', 'gadget',
  'hlp', 'hta', 'inf', 'ins', 'iso', 'img', 'isp', 'jar', 'js', 'jse', 'lib', 'lnk', 'mde', 'msc', 'msi', 'msix', 'msixbundle',
  'msp', 'mst', 'nsh', 'pif', 'ps1', 'ps1xml', 'ps2', 'ps2xml', 'psc1', 'psc2', 'reg', 'scf', 'scr', 'sct', 'shb', 'shs', 'sys',
  'url', 'vb', 'vbe', 'vbs', 'vhd', 'vhdx', 'vxd', 'wsc', 'wsf', 'wsh', 'xll',
];

export const DEFAULT_BLOCKED_TYPES = [
  'application/x-msdownload',
  'application/x-msdos-program',
  'application/x-dosexec',
  'application/x-ms-shortcut',
  'application/hta',
  'application/x-ms-installer',
];

/** Bidirectional controls and invisible characters that make a name read differently from what it is. */
const DISGUISE = /[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/u;

export const blockedAttachmentText = (what: string) => `5.7.1 Message content rejected: ${what} not allowed`;

/** A file name fit for a reply or a log line: printable ASCII, at most 60 characters. */
export function cleanFileName(name: string): string {
  const s = name.replace(/[^\x20-\x7e]/g, '?').replace(/"/g, "'");
  return s.length > 60 ? s.slice(0, 57) + '...' : s;
}

export class AttachmentCheck implements MimeListener {
  readonly name = 'attachments';
  readonly #ext: ReadonlySet<string>;
  readonly #types: ReadonlySet<string>;

  constructor(p: AttachmentPolicy) {
    this.#ext = new Set(p.blockedExtensions);
    this.#types = new Set(p.blockedTypes);
  }

  partStart(part: PartInfo): Verdict | null {
    const t = part.type;
    if (this.#types.has(t) || this.#types.has(t.slice(0, t.indexOf('/') + 1) + '*'))
      return this.#refuse(`attachment of type ${t}`, `type ${t}`);
    const name = part.filename;
    if (name === null) return null;
    if (DISGUISE.test(name)) return this.#refuse(`attachment "${cleanFileName(name)}" with a disguised name`, 'disguised file name');
    const ext = extensionOf(name);
    if (ext !== null && this.#ext.has(ext)) return this.#refuse(`attachment "${cleanFileName(name)}" (.${ext})`, `extension .${ext}`);
    return null;
  }

  #refuse(what: string, reason: string): Verdict {
    return { stage: this.name, code: 550, text: blockedAttachmentText(what), reason };
  }
}

/** The extension that decides what a file is, lower-case, or null. */
export function extensionOf(name: string): string | null {
  const base = name.replace(/[\s.]+$/u, '').split(/[\\/]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  if (dot < 0 || dot === base.length - 1) return null;
  return base.slice(dot + 1).trim().toLowerCase();
}
