/*
 * config/paths.ts: settings by path ("inbound.localDomains",
 * "internal.servers[0].port") on configuration documents, and what the schema
 * says each path holds (for `set` values, `?` help and tab completion).
 *
 * Works on the document (the JSON as stored), never on the validated Config.
 * Must never accept a path the schema does not know, a path longer than
 * MAX_PATH, or a key like __proto__ (the parser admits only plain names and
 * indexes). Called by control/server.ts (config get/set/delete) and the
 * console (console/commands.ts) for completion and value parsing.
 */
import { configSchema } from './schema.ts';

export type PathPart = string | number;
export const MAX_PATH = 200;

export class PathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathError';
  }
}

/** "a.b[0].c" → ['a', 'b', 0, 'c']. */
export function parseSettingPath(p: string): PathPart[] {
  if (p.length === 0) return [];
  if (p.length > MAX_PATH) throw new PathError(`setting path longer than ${MAX_PATH} characters`);
  const out: PathPart[] = [];
  const re = /([A-Za-z][A-Za-z0-9]*)|\[(\d{1,4})\]|(\.)/gy;
  let expectName = true;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < p.length && (m = re.exec(p))) {
    at = re.lastIndex;
    if (m[1] !== undefined) {
      if (!expectName) throw new PathError(`bad setting path ${JSON.stringify(p)}`);
      out.push(m[1]);
      expectName = false;
    } else if (m[2] !== undefined) {
      if (expectName) throw new PathError(`bad setting path ${JSON.stringify(p)}`);
      out.push(Number(m[2]));
    } else {
      if (expectName) throw new PathError(`bad setting path ${JSON.stringify(p)}`);
      expectName = true;
    }
  }
  if (at !== p.length || expectName) throw new PathError(`bad setting path ${JSON.stringify(p)}: use names and [index], such as internal.servers[0].port`);
  return out;
}

export function formatSettingPath(parts: PathPart[]): string {
  return parts.map((x, i) => (typeof x === 'number' ? `[${x}]` : i ? `.${x}` : x)).join('');
}

// ---------------------------------------------------------------- the schema as a tree

export type SettingNode =
  | { kind: 'object'; children: Record<string, SettingNode>; description?: string }
  | { kind: 'array'; element: SettingNode; description?: string }
  | { kind: 'string' | 'number' | 'boolean'; description?: string }
  | { kind: 'enum'; options: string[]; description?: string };

type ZodLike = { def?: { type?: string; innerType?: ZodLike; in?: ZodLike; shape?: Record<string, ZodLike>; element?: ZodLike; entries?: Record<string, string> }; description?: string };

function toNode(s: ZodLike, depth = 0): SettingNode {
  let t = s;
  const description = s.description;
  for (let i = 0; i < 10; i++) {
    const type = t.def?.type;
    if (type === 'default' || type === 'prefault' || type === 'optional' || type === 'nullable') t = t.def!.innerType!;
    else if (type === 'pipe') t = t.def!.in!;
    else break;
  }
  const type = t.def?.type;
  const d = description ? { description } : {};
  if (type === 'object' && depth < 8) {
    const children: Record<string, SettingNode> = {};
    for (const [k, v] of Object.entries(t.def!.shape!)) children[k] = toNode(v, depth + 1);
    return { kind: 'object', children, ...d };
  }
  if (type === 'array') return { kind: 'array', element: toNode(t.def!.element!, depth + 1), ...d };
  if (type === 'enum') return { kind: 'enum', options: Object.values(t.def!.entries!), ...d };
  if (type === 'number' || type === 'boolean') return { kind: type, ...d };
  return { kind: 'string', ...d };
}

export const settingTree: SettingNode = toNode(configSchema as unknown as ZodLike);

/** The schema node for a path, or a PathError naming the first unknown part. */
export function settingAt(parts: PathPart[]): SettingNode {
  let n = settingTree;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (typeof p === 'number') {
      if (n.kind !== 'array') throw new PathError(`${formatSettingPath(parts.slice(0, i))} is not a list`);
      n = n.element;
    } else {
      if (n.kind !== 'object' || !Object.hasOwn(n.children, p)) throw new PathError(`unknown setting ${formatSettingPath(parts.slice(0, i + 1))}`);
      n = n.children[p]!;
    }
  }
  return n;
}

// ---------------------------------------------------------------- documents

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function getAt(doc: unknown, parts: PathPart[]): unknown {
  let v = doc;
  for (const p of parts) {
    if (typeof p === 'number') v = Array.isArray(v) ? v[p] : undefined;
    else v = isObject(v) && Object.hasOwn(v, p) ? v[p] : undefined;
  }
  return v;
}

/** A copy of `doc` with `value` at the path (parents created as needed). */
export function setAt(doc: unknown, parts: PathPart[], value: unknown): unknown {
  if (parts.length === 0) return structuredClone(value);
  const root = isObject(doc) ? structuredClone(doc) : {};
  let v: Record<PathPart, unknown> | unknown[] = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i]!;
    const nextIsIndex = typeof parts[i + 1] === 'number';
    let child = (v as Record<PathPart, unknown>)[p];
    if (nextIsIndex ? !Array.isArray(child) : !isObject(child)) {
      child = nextIsIndex ? [] : {};
      setChild(v, p, child);
    }
    v = child as Record<PathPart, unknown>;
  }
  setChild(v, parts.at(-1)!, structuredClone(value));
  return root;
}

function setChild(v: Record<PathPart, unknown> | unknown[], p: PathPart, value: unknown): void {
  if (typeof p === 'number' && Array.isArray(v)) {
    if (p > v.length) throw new PathError(`index ${p} is past the end of the list (${v.length} entries)`);
    v[p] = value;
  } else (v as Record<PathPart, unknown>)[p] = value;
}

/** A copy of `doc` without the setting at the path (a list entry is removed, later ones move up). */
export function deleteAt(doc: unknown, parts: PathPart[]): unknown {
  if (parts.length === 0) throw new PathError('name the setting to delete');
  if (getAt(doc, parts) === undefined) throw new PathError(`${formatSettingPath(parts)} is not set`);
  const root = structuredClone(doc) as Record<string, unknown>;
  const parent = getAt(root, parts.slice(0, -1)) as Record<PathPart, unknown> | unknown[];
  const last = parts.at(-1)!;
  if (Array.isArray(parent) && typeof last === 'number') parent.splice(last, 1);
  else delete (parent as Record<PathPart, unknown>)[last];
  return root;
}

/**
 * A value for the node from console words: a list takes every word, a number
 * or a boolean is parsed, a word that starts with [ { or " is read as JSON.
 */
export function valueFromWords(node: SettingNode, words: string[], path: string): unknown {
  if (words.length === 0) throw new PathError(`${path}: give a value`);
  const first = words[0]!;
  if (words.length === 1 && /^[[{"]/.test(first)) {
    try {
      return JSON.parse(first);
    } catch {
      throw new PathError(`${path}: ${JSON.stringify(first.slice(0, 40))} is not valid JSON`);
    }
  }
  const scalar = (n: SettingNode, w: string): unknown => {
    if (n.kind === 'number') {
      if (!/^-?\d+(\.\d+)?$/.test(w)) throw new PathError(`${path}: expected a number, got ${JSON.stringify(w.slice(0, 40))}`);
      return Number(w);
    }
    if (n.kind === 'boolean') {
      if (w !== 'true' && w !== 'false') throw new PathError(`${path}: expected true or false, got ${JSON.stringify(w.slice(0, 40))}`);
      return w === 'true';
    }
    if (n.kind === 'enum' && !n.options.includes(w)) throw new PathError(`${path}: expected one of ${n.options.join(', ')}`);
    if (n.kind === 'object' || n.kind === 'array') throw new PathError(`${path}: give this as JSON, or set the settings inside it`);
    return w;
  };
  if (node.kind === 'array') return words.map((w) => scalar(node.element, w));
  if (words.length > 1 && node.kind !== 'string') throw new PathError(`${path}: expected one value`);
  return scalar(node, words.join(' '));
}
