/*
 * smtp/server-hooks.ts: the three places where moat reaches inside smtp-server,
 * all in one file and checked at start-up.
 *
 *  1. The greeting. smtp-server waits a hard-coded 100 ms before every banner
 *     (its early-talker check). moat owns that wait as policy (inbound.pregreetMs,
 *     0 allowed): MoatSMTPServer.connect() repeats the library's few lines and
 *     calls connectionReady() itself. A client that talks before the banner is
 *     still refused by the library ("421 You talk too soon").
 *  2. Enhanced status codes. smtp-server picks the enhanced code of an error reply
 *     from the basic code alone (554 → 5.6.0). A reply text that starts with its
 *     own enhanced code ("5.7.1 Relay rejected…") is sent without a second one.
 *  3. The raw address. smtp-server strips source routes ("<@a:b@c>" → "b@c") and
 *     turns punycode into Unicode before moat sees an address; relay control needs
 *     the path exactly as sent, so it is kept as `raw` on the parsed object. A
 *     recipient the library refuses as bad syntax but that is a routing trick is
 *     passed on, so relay control refuses it with 554 5.7.1 like the others.
 *
 * smtp-server is pinned to an exact version; assertHooks() fails start-up if a
 * new version moved what these hooks rely on. Must never change the protocol
 * beyond these three points. Called by smtp/inbound.ts.
 */
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Socket } from 'node:net';
import { isRoutingTrick, parsePath } from '../policy/address.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type AnyConnection = any;

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

let installed = false;

/** Throws if smtp-server no longer has what the hooks use. */
export function assertHooks(): void {
  const proto = (SMTPConnection as any).prototype;
  const missing = ['_setListeners', 'connectionReady', 'send', '_parseAddressCommand', 'close'].filter((k) => typeof proto[k] !== 'function');
  const sproto = (SMTPServer as any).prototype;
  if (typeof sproto._onError !== 'function' || typeof sproto._onClientConnect !== 'function') missing.push('SMTPServer internals');
  if (missing.length) throw new Error(`smtp-server changed; moat's hooks need: ${missing.join(', ')}`);
}

function install(): void {
  if (installed) return;
  assertHooks();
  const proto = (SMTPConnection as any).prototype;
  const send = proto.send;
  proto.send = function (this: AnyConnection, code: number, data: unknown, context?: unknown) {
    if (typeof data === 'string' && ENHANCED.test(data)) return send.call(this, code, data, false);
    if (Array.isArray(data) && typeof data[0] === 'string' && ENHANCED.test(data[0])) return send.call(this, code, data, false);
    return send.call(this, code, data, context);
  };
  const parse = proto._parseAddressCommand;
  proto._parseAddressCommand = function (this: AnyConnection, name: string, command: unknown) {
    const parsed = parse.call(this, name, command);
    const text = String(command ?? '');
    const colon = text.indexOf(':');
    const raw = colon < 0 ? '' : (text.slice(colon + 1).trim().split(/\s+/)[0] ?? '');
    if (parsed) {
      parsed.raw = raw;
      return parsed;
    }
    // The library refused the syntax (501). A recipient that is a routing trick
    // (say "<\"a@b\"@local>") goes on to relay control instead, so that every
    // relay attempt gets the same 554 5.7.1 and is logged as one.
    if (/^rcpt to$/i.test(String(name).trim()) && /^<[^<>]+>$/.test(raw)) {
      const r = parsePath(raw, { allowNull: false });
      if (!r.ok && isRoutingTrick(r.refusal)) return { address: raw.slice(1, -1), args: false, raw };
    }
    return parsed;
  };
  installed = true;
}

export type ConnectionHandle = {
  id: string;
  remoteAddress: string;
  /** Sends a final reply and closes the connection. */
  closeWith(code: number, text: string): void;
};

/** smtp-server with moat's greeting wait and a hook on every new connection. */
export class MoatSMTPServer extends SMTPServer {
  private readonly pregreetMs: number;
  private readonly onConnection: (c: ConnectionHandle) => () => void;

  constructor(options: SMTPServerOptions, pregreetMs: number, onConnection: (c: ConnectionHandle) => () => void) {
    install();
    super(options);
    this.pregreetMs = pregreetMs;
    this.onConnection = onConnection;
  }

  override connect(socket: Socket, socketOptions: unknown): void {
    const self = this as any;
    const connection: AnyConnection = new (SMTPConnection as any)(this, socket, socketOptions);
    self.connections.add(connection);
    connection.on('error', (err: Error) => self._onError(err));
    connection.on('connect', (data: unknown) => self._onClientConnect(data));
    const done = this.onConnection({
      id: connection.id,
      remoteAddress: connection.remoteAddress,
      closeWith: (code, text) => {
        if (connection._closed || connection._closing) return;
        connection.send(code, text);
        connection.close();
      },
    });
    socket.once('close', done);
    connection._setListeners(() => {
      const max = self.options.maxClients;
      if (max && self.connections.size > max) {
        connection.send(421, `4.7.0 ${self.options.name} Too many connections, try again later`);
        connection.close();
        return;
      }
      if (this.pregreetMs > 0) setTimeout(() => connection.connectionReady(), this.pregreetMs).unref();
      else connection.connectionReady();
    });
  }
}
