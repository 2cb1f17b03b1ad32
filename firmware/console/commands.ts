/*
 * console/commands.ts: the console's command language (operational and
 * configuration mode), with `?` help and tab completion at every word.
 *
 * A command is a path of words through a small tree, then its arguments.
 * Words may be shortened to any unique prefix (`sh st` is `show status`).
 * Each command turns into control-socket requests; nothing here touches the
 * configuration file or the spool itself. Must never show the password hash
 * (moatd already hides it) and never build a shell command.
 * Called by console/session.ts (the serial console) and control/ctl.ts
 * (`moat ctl`, which runs the same commands from the appliance's shell).
 */
import { networkInterfaces } from 'node:os';
import type { ControlClient } from '../control/client.ts';
import { formatSettingPath, parseSettingPath, settingAt, settingTree, valueFromWords, type SettingNode } from '../config/paths.ts';

export type Mode = 'operational' | 'configure';

export type CommandContext = {
  mode: Mode;
  setMode(m: Mode): void;
  user: string;
  /** The session's control connection (its candidate configuration lives there). */
  ctl(): Promise<ControlClient>;
  /** Output, paged by the console. */
  out(lines: string[]): Promise<void>;
  confirm(question: string): Promise<boolean>;
  logout(): void;
  /** Reboots the appliance (moat-panel owns the machine's power, not moatd). */
  reboot(): Promise<void>;
  /** Queue ids seen last, for completion. */
  queueIds: string[];
};

type Arg = {
  name: string;
  help: string;
  /** Takes every word that follows. */
  rest?: boolean;
  optional?: boolean;
  complete?(ctx: CommandContext, partial: string, args: string[]): string[];
};

export type CommandNode = {
  word: string;
  help: string;
  children?: CommandNode[];
  arg?: Arg;
  run?(ctx: CommandContext, args: string[]): Promise<void>;
};

export class UsageError extends Error {}

const str = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

// ---------------------------------------------------------------- setting paths

/** Completions of a partial setting path: "inbound.lo" → ["inbound.localDomains"], objects end in ".". */
export function completePath(partial: string): string[] {
  const dot = partial.lastIndexOf('.');
  const parentText = dot < 0 ? '' : partial.slice(0, dot);
  const leaf = partial.slice(dot + 1);
  let node: SettingNode;
  try {
    node = settingAt(parseSettingPath(parentText));
  } catch {
    return [];
  }
  while (node.kind === 'array') node = node.element;
  if (node.kind !== 'object') return [];
  return Object.entries(node.children)
    .filter(([k]) => k.startsWith(leaf))
    .map(([k, n]) => (parentText ? `${parentText}.` : '') + k + (n.kind === 'object' ? '.' : ''));
}

function describeNode(n: SettingNode): string {
  const what =
    n.kind === 'enum' ? `one of: ${n.options.join(' ')}` : n.kind === 'array' ? `a list (give each entry as a word, or JSON)` : n.kind === 'object' ? 'a group of settings' : `a ${n.kind}`;
  return n.description ? `${what}. ${n.description}` : what;
}

const pathArg = (help: string, optional = false): Arg => ({
  name: 'SETTING',
  help,
  optional,
  complete: (_c, partial) => completePath(partial),
});

// ---------------------------------------------------------------- operational mode

const showStatus = async (ctx: CommandContext) => {
  const s = await (await ctx.ctl()).request<Record<string, any>>('status');
  const lines = [
    `host        ${s.hostname}   up ${formatDuration(s.uptimeSeconds * 1000)}`,
    `health      ${s.health}${s.faults.length ? '' : ' (no faults)'}`,
    ...s.faults.map((f: any) => `  FAULT ${f.code} since ${f.since}: ${f.message}`),
    `state       ${s.state}${s.checkedAt ? ` (checked ${s.checkedAt})` : ''}`,
    ...(s.reasons ?? []).map((r: any) => `  ${r.level === 'fault' ? 'FAULT' : 'DEGRADED'} ${r.code}: ${r.message}`),
    `smtp        listening on ${s.listen}, for ${s.localDomains.join(', ')}`,
    `queue       ${s.queue.total} queued: ${s.queue.ready} ready, ${s.queue.active} active, ${s.queue.deferred} deferred, ${s.queue.held} held`,
    `config      revision ${s.config.revision ?? '(none)'}${s.config.confirmBy ? `, must be confirmed by ${s.config.confirmBy} or it rolls back to ${s.config.rollbackTo}` : ''}`,
  ];
  await ctx.out(lines);
};

const showQueue = async (ctx: CommandContext) => {
  const q = await (await ctx.ctl()).request<{ total: number; messages: Array<Record<string, any>> }>('queue.list', { limit: 1000 });
  ctx.queueIds = q.messages.map((m) => m.id);
  if (q.total === 0) return ctx.out(['the queue is empty']);
  const lines = [`${q.total} message(s)${q.total > q.messages.length ? `, first ${q.messages.length} shown` : ''}`, 'ID                STATE     SIZE      ARRIVED                   FROM -> TO'];
  for (const m of q.messages) {
    lines.push(`${m.id}  ${m.state.padEnd(8)}  ${String(m.size).padEnd(8)}  ${m.arrivedAt}  <${m.from}> -> ${m.to.join(', ')}`);
    if (m.lastReply) lines.push(`                  last reply: ${m.lastReply}`);
  }
  await ctx.out(lines);
};

const queueIdArg: Arg = { name: 'ID', help: 'a queue id (see show queue)', complete: (ctx, partial) => ctx.queueIds.filter((i) => i.startsWith(partial.toUpperCase())) };

const queueAction = (cmd: 'hold' | 'release' | 'delete', done: string) => async (ctx: CommandContext, args: string[]) => {
  if (args.length !== 1) throw new UsageError(`usage: queue ${cmd} ID`);
  await (await ctx.ctl()).request(`queue.${cmd}`, { id: args[0]!.toUpperCase() });
  await ctx.out([`${args[0]!.toUpperCase()} ${done}`]);
};

const showConfig = async (ctx: CommandContext, args: string[], candidate: boolean) => {
  if (args[0] === '|') {
    if (args[1] !== 'compare' || args.length > 2) throw new UsageError('usage: show | compare');
    const d = await (await ctx.ctl()).request<{ lines: string[] }>('config.compare');
    return ctx.out(d.lines.length ? d.lines : ['no changes']);
  }
  if (args.length > 1) throw new UsageError('usage: show [SETTING]');
  const r = await (await ctx.ctl()).request<{ path: string; value: unknown }>('config.get', { path: args[0] ?? '', candidate });
  if (r.value === null) return ctx.out([`${r.path || 'configuration'}: not set (the default applies)`]);
  await ctx.out(JSON.stringify(r.value, null, 2).split('\n'));
};

const operational: CommandNode[] = [
  {
    word: 'show',
    help: 'show the state of moat',
    children: [
      { word: 'status', help: 'health, faults, listener, queue and configuration revision', run: showStatus },
      { word: 'queue', help: 'the messages in the queue', run: showQueue },
      {
        word: 'log',
        help: 'the last lines of moatd\'s log',
        arg: { name: 'LINES', help: 'how many lines (default 50, at most 1000)', optional: true },
        async run(ctx, args) {
          const n = args[0] === undefined ? 50 : Number(args[0]);
          if (!Number.isInteger(n) || n < 1 || n > 1000) throw new UsageError('usage: show log [LINES], LINES from 1 to 1000');
          const r = await (await ctx.ctl()).request<{ lines: string[] }>('log.tail', { lines: n });
          await ctx.out(r.lines.length ? r.lines.map(formatLogLine) : ['the log is empty']);
        },
      },
      { word: 'config', help: 'the running configuration (or one setting of it)', arg: pathArg('a setting, such as inbound.localDomains', true), run: (ctx, args) => showConfig(ctx, args, false) },
      {
        word: 'interfaces',
        help: 'network settings and the addresses the system has',
        async run(ctx) {
          const r = await (await ctx.ctl()).request<{ value: any }>('config.get', { path: 'network' });
          const n = r.value ?? {};
          const lines = [`configured  ${n.interface ?? 'eth0'}: ${n.mode === 'static' ? `${n.address}/${n.prefix} gateway ${n.gateway ?? '(none)'}` : 'DHCP'}`];
          if (n.dnsServers?.length) lines.push(`dns         ${n.dnsServers.join(' ')}`);
          if (n.ntpServers?.length) lines.push(`ntp         ${n.ntpServers.join(' ')}`);
          for (const [name, addrs] of Object.entries(networkInterfaces())) for (const a of addrs ?? []) lines.push(`system      ${name.padEnd(8)} ${a.cidr ?? a.address}`);
          await ctx.out(lines);
        },
      },
      {
        word: 'revisions',
        help: 'the configuration revisions kept (for rollback)',
        async run(ctx) {
          const r = await (await ctx.ctl()).request<{ running: number; revisions: Array<Record<string, any>> }>('config.revisions');
          const newest = r.revisions.length - 1;
          await ctx.out(
            r.revisions
              .map((v, i) => `${String(newest - i).padStart(2)}  rev ${v.revision}${v.revision === r.running ? ' (running)' : ''}  ${v.time}  ${v.user}${v.comment ? `  ${v.comment}` : ''}${v.ok ? '' : '  DAMAGED'}`)
              .reverse(),
          );
        },
      },
    ],
  },
  {
    word: 'queue',
    help: 'act on the queue',
    children: [
      {
        word: 'flush',
        help: 'try every deferred message now',
        async run(ctx) {
          await (await ctx.ctl()).request('queue.flush');
          await ctx.out(['deferred messages are being tried now']);
        },
      },
      { word: 'hold', help: 'keep a message from delivery (until released)', arg: queueIdArg, run: queueAction('hold', 'is on hold') },
      { word: 'release', help: 'release a held message', arg: queueIdArg, run: queueAction('release', 'released') },
      {
        word: 'delete',
        help: 'delete a message without delivering it (no bounce)',
        arg: queueIdArg,
        async run(ctx, args) {
          if (args.length !== 1) throw new UsageError('usage: queue delete ID');
          if (!(await ctx.confirm(`delete ${args[0]!.toUpperCase()} without delivering it?`))) return ctx.out(['not deleted']);
          await queueAction('delete', 'deleted')(ctx, args);
        },
      },
    ],
  },
  {
    word: 'test',
    help: 'tests',
    children: [
      {
        word: 'delivery',
        help: 'queue a small test message to an address',
        arg: { name: 'ADDRESS', help: 'user@domain' },
        async run(ctx, args) {
          if (args.length !== 1) throw new UsageError('usage: test delivery ADDRESS');
          const r = await (await ctx.ctl()).request<{ queueId: string; to: string }>('test.delivery', { to: args[0] });
          await ctx.out([`test message to ${r.to} queued as ${r.queueId} (see show queue, show log)`]);
        },
      },
    ],
  },
  {
    word: 'dig',
    help: 'DNS lookups',
    children: [
      {
        word: 'mx',
        help: 'the mail servers of a domain (MX records)',
        arg: { name: 'DOMAIN', help: 'a domain, such as example.com' },
        async run(ctx, args) {
          if (args.length !== 1) throw new UsageError('usage: dig mx DOMAIN');
          const r = await (await ctx.ctl()).request<{ domain: string; servers: string[]; mx: Array<{ exchange: string; priority: number }>; note?: string }>('dns.mx', { domain: args[0] });
          await ctx.out([...r.mx.map((m) => `${r.domain}  MX  ${m.priority}  ${m.exchange}`), ...(r.note ? [`${r.domain}: ${r.note}`] : []), `(asked ${r.servers.join(', ')})`]);
        },
      },
    ],
  },
  {
    word: 'configure',
    help: 'enter configuration mode',
    async run(ctx) {
      ctx.setMode('configure');
      await ctx.out(['entering configuration mode (set, delete, show | compare, commit, rollback N, exit)']);
    },
  },
  {
    word: 'reboot',
    help: 'restart the appliance',
    async run(ctx) {
      if (!(await ctx.confirm('reboot the appliance now?'))) return ctx.out(['not rebooted']);
      await ctx.out(['rebooting']);
      await ctx.reboot();
    },
  },
  {
    word: 'factory-reset',
    help: 'commit the factory configuration (the password goes back to the factory one)',
    async run(ctx) {
      if (!(await ctx.confirm('replace the whole configuration with the factory one?'))) return ctx.out(['nothing changed']);
      const r = await (await ctx.ctl()).request<{ revision: number }>('system.factoryReset', { user: ctx.user });
      await ctx.out([`factory configuration committed as revision ${r.revision}`]);
    },
  },
  {
    word: 'exit',
    help: 'log out',
    async run(ctx) {
      ctx.logout();
    },
  },
];

// ---------------------------------------------------------------- configuration mode

const configuration: CommandNode[] = [
  {
    word: 'set',
    help: 'change a setting in the candidate configuration',
    arg: {
      name: 'SETTING VALUE',
      help: 'a setting and its value; a list takes every word that follows',
      rest: true,
      complete(_c, partial, args) {
        if (args.length === 0) return completePath(partial);
        try {
          const n = settingAt(parseSettingPath(args[0]!));
          const e = n.kind === 'array' ? n.element : n;
          if (e.kind === 'enum') return e.options.filter((o) => o.startsWith(partial));
          if (e.kind === 'boolean') return ['true', 'false'].filter((o) => o.startsWith(partial));
        } catch {
          /* no completion for an unknown setting */
        }
        return [];
      },
    },
    async run(ctx, args) {
      if (args.length < 2) throw new UsageError('usage: set SETTING VALUE...');
      const parts = parseSettingPath(args[0]!);
      const path = formatSettingPath(parts);
      const value = valueFromWords(settingAt(parts), args.slice(1), path);
      await (await ctx.ctl()).request('config.set', { path, value });
    },
  },
  {
    word: 'delete',
    help: 'remove a setting from the candidate (its default applies)',
    arg: pathArg('a setting, such as inbound.tls'),
    async run(ctx, args) {
      if (args.length !== 1) throw new UsageError('usage: delete SETTING');
      await (await ctx.ctl()).request('config.delete', { path: args[0] });
    },
  },
  {
    word: 'show',
    help: 'the candidate configuration, a setting of it, or "show | compare"',
    arg: { name: 'SETTING | compare', help: 'a setting, or "| compare" for the changes against the running configuration', rest: true, optional: true, complete: (_c, partial, args) => (args[0] === '|' ? ['compare'].filter((x) => x.startsWith(partial)) : ['|', ...completePath(partial)].filter((x) => x.startsWith(partial))) },
    run: (ctx, args) => showConfig(ctx, args, true),
  },
  {
    word: 'commit',
    help: 'validate and activate the candidate ("commit confirmed N": roll back after N minutes unless confirmed by another commit)',
    arg: { name: 'confirmed N', help: 'roll back by itself after N minutes unless committed again', rest: true, optional: true, complete: (_c, partial, args) => (args.length === 0 ? ['confirmed'].filter((x) => x.startsWith(partial)) : []) },
    async run(ctx, args) {
      let confirmMs: number | undefined;
      if (args.length) {
        const n = Number(args[1]);
        if (!'confirmed'.startsWith(args[0]!) || args.length !== 2 || !Number.isInteger(n) || n < 1 || n > 1440) throw new UsageError('usage: commit [confirmed MINUTES], MINUTES from 1 to 1440');
        confirmMs = n * 60_000;
      }
      const c = await ctx.ctl();
      const diff = await c.request<{ lines: string[] }>('config.compare');
      if (diff.lines.length === 0 && confirmMs === undefined) {
        const s = await c.request<{ config: { confirmBy?: string } }>('status');
        if (s.config.confirmBy) {
          await c.request('config.confirm');
          return ctx.out(['commit confirmed']);
        }
        return ctx.out(['no changes to commit']);
      }
      const r = await c.request<{ revision: number; restartNeeded: string[]; confirmBy?: string }>('config.commit', { user: ctx.user, ...(confirmMs ? { confirmMs } : {}) });
      const lines = [`commit complete: revision ${r.revision}`];
      if (r.confirmBy) lines.push(`rolls back at ${r.confirmBy} unless you commit again`);
      if (r.restartNeeded.length) lines.push(`takes effect after a restart: ${r.restartNeeded.join(', ')}`);
      await ctx.out(lines);
    },
  },
  {
    word: 'rollback',
    help: 'commit an earlier revision again ("rollback 1" undoes the last commit; "rollback 0" discards the candidate)',
    arg: { name: 'N', help: 'how many commits back (see show revisions in operational mode)' },
    async run(ctx, args) {
      const n = Number(args[0]);
      if (args.length !== 1 || !Number.isInteger(n) || n < 0 || n > 100) throw new UsageError('usage: rollback N (0 discards the candidate)');
      const c = await ctx.ctl();
      if (n === 0) {
        await c.request('config.discard');
        return ctx.out(['candidate discarded']);
      }
      const r = await c.request<{ revision: number }>('config.rollback', { back: n, user: ctx.user });
      await ctx.out([`rolled back ${n}: revision ${r.revision} is running`]);
    },
  },
  {
    word: 'exit',
    help: 'leave configuration mode (uncommitted changes stay in the candidate)',
    async run(ctx) {
      const d = await (await ctx.ctl()).request<{ lines: string[] }>('config.compare');
      ctx.setMode('operational');
      if (d.lines.length) await ctx.out([`${d.lines.length} uncommitted change(s) kept; "configure" and "commit" to activate them`]);
    },
  },
];

export function commandsFor(mode: Mode): CommandNode[] {
  return mode === 'operational' ? operational : configuration;
}

// ---------------------------------------------------------------- parsing, help, completion

export function words(line: string): string[] {
  return line.trim() === '' ? [] : line.trim().split(/\s+/);
}

function match(nodes: CommandNode[], w: string): CommandNode | CommandNode[] {
  const exact = nodes.find((n) => n.word === w);
  if (exact) return exact;
  const some = nodes.filter((n) => n.word.startsWith(w));
  return some.length === 1 ? some[0]! : some;
}

/** Finds the command for the words: the node and its argument words. */
export function resolve(mode: Mode, ws: string[]): { node: CommandNode; args: string[] } {
  let nodes = commandsFor(mode);
  let node: CommandNode | null = null;
  let i = 0;
  for (; i < ws.length; i++) {
    if (node && !node.children) break;
    const m = match(nodes, ws[i]!);
    if (Array.isArray(m)) {
      if (m.length === 0) throw new UsageError(`unknown command "${ws.slice(0, i + 1).join(' ')}"; type ? for help`);
      throw new UsageError(`"${ws[i]}" is ambiguous: ${m.map((n) => n.word).join(', ')}`);
    }
    node = m;
    nodes = m.children ?? [];
  }
  if (!node) throw new UsageError('type ? for help');
  if (!node.run) throw new UsageError(`incomplete command; "${ws.join(' ')} ?" lists what follows`);
  return { node, args: ws.slice(i) };
}

export async function execute(ctx: CommandContext, line: string): Promise<void> {
  const ws = words(line);
  if (ws.length === 0) return;
  const { node, args } = resolve(ctx.mode, ws);
  if (args.length && !node.arg) throw new UsageError(`"${node.word}" takes no arguments`);
  await node.run!(ctx, args);
}

/** Where the words lead: the nodes to choose from next, or the command whose argument comes next. */
function position(mode: Mode, done: string[]): { nodes: CommandNode[] } | { node: CommandNode; args: string[] } | null {
  let nodes = commandsFor(mode);
  for (let i = 0; i < done.length; i++) {
    const m = match(nodes, done[i]!);
    if (Array.isArray(m)) return null;
    if (!m.children) return { node: m, args: done.slice(i + 1) };
    nodes = m.children;
  }
  return { nodes };
}

export function complete(ctx: CommandContext, before: string): { insert: string; choices: string[] } {
  const ws = before.split(/\s+/);
  const partial = ws.pop() ?? '';
  const done = ws.filter(Boolean);
  const pos = position(ctx.mode, done);
  if (!pos) return { insert: '', choices: [] };
  let choices: string[];
  if ('nodes' in pos) choices = pos.nodes.map((n) => n.word).filter((w) => w.startsWith(partial));
  else choices = pos.node.arg?.complete?.(ctx, partial, pos.args) ?? [];
  if (choices.length === 0) return { insert: '', choices: [] };
  if (choices.length === 1) {
    const c = choices[0]!;
    return { insert: c.slice(partial.length) + (c.endsWith('.') ? '' : ' '), choices };
  }
  let common = choices[0]!;
  for (const c of choices) while (!c.startsWith(common)) common = common.slice(0, -1);
  return { insert: common.slice(partial.length), choices };
}

export function help(ctx: CommandContext, before: string): string[] {
  const ws = before.split(/\s+/);
  const partial = ws.pop() ?? '';
  const done = ws.filter(Boolean);
  const pos = position(ctx.mode, done);
  if (!pos) return ['  (unknown command)'];
  if ('nodes' in pos) {
    const list = pos.nodes.filter((n) => n.word.startsWith(partial));
    if (!list.length) return ['  (no command starts with that)'];
    const w = Math.max(...list.map((n) => n.word.length)) + 2;
    return list.map((n) => `  ${n.word.padEnd(w)}${n.help}`);
  }
  const { node, args } = pos;
  if (!node.arg) return ['  <Enter>  run the command'];
  const lines: string[] = [];
  if ((node.word === 'set' || node.word === 'delete' || (node.word === 'show' && args[0] !== '|')) && (args.length === 0 || node.word === 'show')) {
    const paths = completePath(partial);
    if (paths.length) {
      lines.push('  settings:');
      for (const p of paths.slice(0, 40)) {
        let d = '';
        try {
          d = describeNode(settingAt(parseSettingPath(p.replace(/\.$/, ''))));
        } catch {
          /* shown without a description */
        }
        lines.push(`    ${p.padEnd(34)}${d}`);
      }
    }
  } else if (node.word === 'set' && args.length >= 1) {
    try {
      lines.push(`  ${args[0]}: ${describeNode(settingAt(parseSettingPath(args[0]!)))}`);
    } catch (e) {
      lines.push(`  ${(e as Error).message}`);
    }
  } else {
    const extra = node.arg.complete?.(ctx, partial, args) ?? [];
    lines.push(`  <${node.arg.name}>  ${node.arg.help}`);
    if (extra.length) lines.push(`  ${extra.slice(0, 20).join('  ')}`);
  }
  if (node.arg.optional || node.arg.rest) lines.push('  <Enter>  run the command');
  return lines.length ? lines : [`  <${node.arg.name}>  ${node.arg.help}`];
}

// ---------------------------------------------------------------- formatting

function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

/** A log line (pino JSON) as `TIME LEVEL ev key=value…`. */
export function formatLogLine(line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const { time, level, msg, ev, svc, ...rest } = o;
    void svc;
    const kv = Object.entries(rest)
      .map(([k, v]) => `${k}=${str(v)}`)
      .join(' ');
    return `${String(time ?? '').replace('T', ' ').replace(/\.\d+Z$/, 'Z')} ${String(level ?? '').padEnd(5)} ${ev ?? msg}${kv ? ' ' + kv : ''}`;
  } catch {
    return line;
  }
}

export { settingTree };
