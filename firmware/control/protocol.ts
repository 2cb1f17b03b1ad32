/*
 * control/protocol.ts: the control socket's wire format, shared by moatd's
 * server and its clients (moat-panel, `moat ctl`, tests).
 *
 * One JSON object per line (LF), UTF-8, over a unix socket. Version 1:
 *   request   {"v":1,"id":ID,"cmd":"config.set","args":{...}}
 *   response  {"v":1,"id":ID,"ok":true,"result":...}
 *             {"v":1,"id":ID,"ok":false,"error":{"code":"...","message":"..."}}
 * ID is a number or a short string chosen by the client and echoed back.
 * Commands that change something are answered in request order; read-only ones
 * (status, dns.mx, log.tail, queue.list, config.revisions) may overtake them,
 * so a client matches answers by id. A request line over MAX_REQUEST_BYTES is
 * refused with `too-large` and the connection is closed (the rest of the line
 * cannot be trusted to be a request). Must never hold an unbounded line: the
 * LineReader drops a line as soon as it passes its limit.
 */
export const PROTOCOL_VERSION = 1;
export const MAX_REQUEST_BYTES = 64 * 1024;
/** A client's limit for one response line (queue lists and log tails are bounded well below it). */
export const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

export type RequestId = number | string;
export type Request = { v: number; id: RequestId; cmd: string; args?: Record<string, unknown> };
export type ErrorCode =
  | 'bad-request'
  | 'too-large'
  | 'unsupported-version'
  | 'unknown-command'
  | 'invalid-config'
  | 'not-found'
  | 'busy'
  | 'failed';
export type Response =
  | { v: number; id: RequestId | null; ok: true; result: unknown }
  | { v: number; id: RequestId | null; ok: false; error: { code: ErrorCode; message: string } };

/** Splits a byte stream into lines, never holding more than `max` bytes of an unfinished line. */
export class LineReader {
  private parts: Buffer[] = [];
  private size = 0;
  private readonly max: number;
  private readonly onLine: (line: string) => void;
  private readonly onOverflow: () => void;
  private overflowed = false;

  constructor(max: number, onLine: (line: string) => void, onOverflow: () => void) {
    this.max = max;
    this.onLine = onLine;
    this.onOverflow = onOverflow;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length && !this.overflowed) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      if (this.size + (end - start) > this.max) {
        this.overflowed = true;
        this.parts = [];
        this.onOverflow();
        return;
      }
      if (nl < 0) {
        this.parts.push(chunk.subarray(start));
        this.size += chunk.length - start;
        return;
      }
      this.parts.push(chunk.subarray(start, nl));
      const line = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.size = 0;
      start = nl + 1;
      if (line.trim() !== '') this.onLine(line);
    }
  }
}
