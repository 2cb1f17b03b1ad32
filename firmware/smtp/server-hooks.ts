/*
 * smtp/server-hooks.ts: the three places where moat reaches inside smtp-server,
 * all in one file and checked at start-up.
 *
 *  1. The greeting. smtp-server waits a hard-coded 100 ms before every banner
 *     (its early-talker check). moat owns that wait as policy (inbound.pregreetMs,
 *     0 allowed): MoatSMTPServer.connect() repeats the library's few lines and
 *     calls connectionReady() itself. A client that talks before the banner
 *     (during that wait, or while the connect checks run) is answered
 *     554 5.7.1 and dropped (the library would say "421 You talk too soon" and
 *     keep listening); hooks.onEarlyTalker hears of it.
 *  2. Enhanced status codes. smtp-server picks the enhanced code of an error reply
 *     from the basic code alone (554 → 5.6.0). A reply text that starts with its
 *     own enhanced code ("5.7.1 Relay rejected…") is sent without a second one.
 *  3. The raw address. smtp-server strips source routes ("<@a:b@c>" → "b@c") and
 *     turns punycode into Unicode before moat sees an address; relay control needs
 *     the path exactly as sent, so it is kept as `raw` on the parsed object. A
 *     recipient the library refuses as bad syntax but that is a routing trick is
 *     passed on, so relay control refuses it with 554 5.7.1 like the others.
 *  4. HELO/EHLO. smtp-server has no hook for it; hooks.onHelo is asked before
 *     the library's own handler runs, and may answer instead (policy/ helo checks).
 *  5. Errors per session. After hooks.maxErrors 5xx replies in one session the
 *     connection gets 421 4.7.0 and is closed (policy.maxErrors).
 *
 * smtp-server is pinned to an exact version; assertHooks() fails start-up if a
 * new version moved what these hooks rely on. Must never change the protocol
 * beyond these points. Called by smtp/inbound.ts.
 */
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Socket } from 'node:net';
import { isRoutingTrick, parsePath } from '../policy/address.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type AnyConnection = any;

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

let installed = false;

const PREGREET = '5.7.1 Protocol violation: talked before the greeting';
const TOO_MANY_ERRORS = '4.7.0 Too many errors, closing connection';

/** What the policy adds to the protocol (points 1, 4 and 5 above). */
export type ServerHooks = {
  onEarlyTalker?: (c: { id: string; remoteAddress: string }) => void;
  onHelo?: (name: string, c: { id: string; remoteAddress: string; localAddress: string }, done: (err?: Error & { responseCode: number }) => void) => void;
  /** 5xx replies in a session before 421 and close; 0: no limit. */
  maxErrors?: number;
};

/** Throws if smtp-server no longer has what the hooks use. */
export function assertHooks(): void {
  const proto = (SMTPConnection as any).prototype;
  const missing = ['_setListeners', 'connectionReady', 'send', '_parseAddressCommand', 'close', '_onCommand', 'handler_HELO', 'handler_EHLO'].filter(
    (k) => typeof proto[k] !== 'function',
  );
  const sproto = (SMTPServer as any).prototype;
  if (typeof sproto._onError !== 'function' || typeof sproto._onClientConnect !== 'function') missing.push('SMTPServer internals');
  if (missing.length) throw new Error(`smtp-server changed; moat's hooks need: ${missing.join(', ')}`);
}

function install(): void {
  if (installed) return;
  assertHooks();
  const proto = (SMTPConnection as any).prototype;
  const send = proto.send;
  const sendOne = function (this: AnyConnection, code: number, data: unknown, context?: unknown) {
    if (typeof data === 'string' && ENHANCED.test(data)) return send.call(this, code, data, false);
    if (Array.isArray(data) && typeof data[0] === 'string' && ENHANCED.test(data[0])) return send.call(this, code, data, false);
    return send.call(this, code, data, context);
  };
  proto.send = function (this: AnyConnection, code: number, data: unknown, context?: unknown) {
    const r = sendOne.call(this, code, data, context);
    const max = (this._server as MoatSMTPServer).hooks?.maxErrors ?? 0;
    if (max > 0 && code >= 500 && code <= 599 && !this._closing && !this._closed) {
      this._moatErrors = (this._moatErrors ?? 0) + 1;
      if (this._moatErrors >= max) {
        sendOne.call(this, 421, TOO_MANY_ERRORS);
        this.close();
      }
    }
    return r;
  };
  const onCommand = proto._onCommand;
  proto._onCommand = function (this: AnyConnection, command: unknown, callback?: () => void) {
    const server = this._server as MoatSMTPServer;
    if (!this._ready && !this._upgrading && !this._closing && !this._closed && !(server as AnyConnection)._closeTimeout && server instanceof MoatSMTPServer) {
      server.hooks.onEarlyTalker?.({ id: this.id, remoteAddress: this.remoteAddress });
      sendOne.call(this, 554, PREGREET);
      this.close();
      return;
    }
    return onCommand.call(this, command, callback);
  };
  for (const name of ['handler_HELO', 'handler_EHLO']) {
    const handler = proto[name];
    proto[name] = function (this: AnyConnection, command: unknown, callback: () => void) {
      const hook = (this._server as MoatSMTPServer).hooks?.onHelo;
      const parts = String(command ?? '').trim().split(/\s+/);
      if (!hook || parts.length !== 2) return handler.call(this, command, callback);
      hook(parts[1]!, { id: this.id, remoteAddress: this.remoteAddress, localAddress: this._socket?.localAddress ?? '' }, (err) => {
        if (this._closing || this._closed) return callback();
        if (err) {
          this.send(err.responseCode, err.message);
          if (err.responseCode === 421) this.close();
          return callback();
        }
        handler.call(this, command, callback);
      });
    };
  }
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
  localAddress: string;
  /** Sends a final reply and closes the connection. */
  closeWith(code: number, text: string): void;
};

/** smtp-server with moat's greeting wait and a hook on every new connection. */
export class MoatSMTPServer extends SMTPServer {
  private readonly pregreetMs: number;
  private readonly onConnection: (c: ConnectionHandle) => () => void;
  readonly hooks: ServerHooks;

  constructor(options: SMTPServerOptions, pregreetMs: number, onConnection: (c: ConnectionHandle) => () => void, hooks: ServerHooks = {}) {
    install();
    super(options);
    this.pregreetMs = pregreetMs;
    this.onConnection = onConnection;
    this.hooks = hooks;
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
      localAddress: socket.localAddress ?? '',
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
