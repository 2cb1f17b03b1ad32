/*
 * delivery/idle-connections.ts: SMTP connections kept open between messages,
 * so that the next transaction to the same place reuses them (RSET) instead of
 * connecting, greeting, EHLO and STARTTLS again.
 *
 * A connection is filed under a key (an internal server; a destination domain
 * and host outward). put() sends RSET and keeps the connection only if the
 * server answers 250, if there is room (at most maxPerKey under one key and
 * maxTotal in all) and nothing was closed; an idle connection is sent QUIT
 * after idleMs. take() hands out the most recently used idle connection that
 * is still usable.
 *
 * Must never: hand out a connection that failed, was closed or is in use; keep
 * one after close(); keep more than the caps. Called by delivery/internal.ts
 * (its per-server pools) and delivery/outbound.ts (per destination).
 */
import type { SmtpClient } from './smtp-client.ts';

export type IdleOptions = { idleMs: number; maxPerKey: number; maxTotal: number };

type Entry = { conn: SmtpClient; timer: NodeJS.Timeout };

export class IdleConnections {
  readonly #o: IdleOptions;
  readonly #idle = new Map<string, Entry[]>();
  #count = 0;
  #closed = false;

  constructor(o: IdleOptions) {
    this.#o = o;
  }

  /** Idle connections kept now, over all keys. */
  get size(): number {
    return this.#count;
  }

  /** An idle, usable connection filed under key, or null. */
  take(key: string): SmtpClient | null {
    const list = this.#idle.get(key);
    while (list?.length) {
      const { conn, timer } = list.pop()!;
      this.#count--;
      clearTimeout(timer);
      if (!list.length) this.#idle.delete(key);
      if (conn.usable) return conn;
      conn.close();
    }
    return null;
  }

  /**
   * Offers a connection after a transaction: reusable ones are reset and kept
   * when there is room; everything else is closed. Resolves when that is done
   * (never rejects); true when the connection was kept.
   */
  async put(key: string, conn: SmtpClient, reusable: boolean): Promise<boolean> {
    if (!reusable || !conn.usable || this.#closed || this.#o.idleMs <= 0 || !this.#room(key)) {
      if (reusable && conn.usable) await conn.quit();
      else conn.close();
      return false;
    }
    try {
      await conn.reset();
    } catch {
      conn.close();
      return false;
    }
    // the room may have gone while RSET was answered
    if (this.#closed || !this.#room(key)) {
      await conn.quit();
      return false;
    }
    const timer = setTimeout(() => {
      const list = this.#idle.get(key);
      const i = list?.findIndex((e) => e.conn === conn) ?? -1;
      if (list && i >= 0) {
        list.splice(i, 1);
        this.#count--;
        if (!list.length) this.#idle.delete(key);
      }
      void conn.quit();
    }, this.#o.idleMs);
    timer.unref();
    const list = this.#idle.get(key);
    if (list) list.push({ conn, timer });
    else this.#idle.set(key, [{ conn, timer }]);
    this.#count++;
    return true;
  }

  #room(key: string): boolean {
    return this.#count < this.#o.maxTotal && (this.#idle.get(key)?.length ?? 0) < this.#o.maxPerKey;
  }

  /** Sends QUIT on every idle connection; nothing is kept from now on. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values())
      for (const { conn, timer } of list) {
        clearTimeout(timer);
        void conn.quit();
      }
    this.#idle.clear();
    this.#count = 0;
  }
}
