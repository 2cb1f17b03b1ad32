// The idle-connection cache against a real SMTP server on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IdleConnections } from './idle-connections.ts';
import { SmtpClient } from './smtp-client.ts';
import { startSink } from '../../test/helpers/sink.ts';

test('idle connections: kept after RSET within the caps, handed out once, never after they broke or after close()', async () => {
  const sink = await startSink();
  const connect = () => SmtpClient.connect({ host: '127.0.0.1', port: sink.port, heloName: 'mx.example.com', tls: 'none', rejectUnauthorized: false, connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  const idle = new IdleConnections({ idleMs: 60_000, maxPerKey: 2, maxTotal: 3 });
  try {
    const [a, b, c, d] = await Promise.all([connect(), connect(), connect(), connect()]);
    assert.equal(await idle.put('one.example', a!, true), true);
    assert.equal(await idle.put('one.example', b!, true), true);
    assert.equal(await idle.put('one.example', c!, true), false, 'over maxPerKey: closed');
    assert.equal(c!.usable, false);
    assert.equal(await idle.put('two.example', d!, true), true);
    assert.equal(idle.size, 3);
    const e = await connect();
    assert.equal(await idle.put('three.example', e, true), false, 'over maxTotal: closed');
    assert.equal(idle.take('three.example'), null);
    assert.equal(await idle.put('three.example', await connect(), false), false, 'not reusable: closed');
    const got = idle.take('one.example');
    assert.ok(got === a || got === b, 'a kept connection for that key');
    assert.equal(idle.take('two.example'), d);
    assert.equal(idle.take('two.example'), null, 'handed out once');
    await d!.quit();
    // a kept connection that broke meanwhile is not handed out
    const other = got === a ? b! : a!;
    other.close();
    assert.equal(idle.take('one.example'), null);
    idle.close();
    assert.equal(await idle.put('one.example', got!, true), false, 'nothing is kept after close()');
    assert.equal(got!.usable, false);
    assert.equal(idle.size, 0);
  } finally {
    idle.close();
    await sink.close();
  }
});

test('idle connections: an idle connection is closed after idleMs', async () => {
  const sink = await startSink();
  const idle = new IdleConnections({ idleMs: 50, maxPerKey: 1, maxTotal: 1 });
  try {
    const conn = await SmtpClient.connect({ host: '127.0.0.1', port: sink.port, heloName: 'mx.example.com', tls: 'none', rejectUnauthorized: false, connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
    assert.equal(await idle.put('one.example', conn, true), true);
    for (let i = 0; i < 200 && conn.usable; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(conn.usable, false, 'closed with QUIT once idle too long');
    assert.equal(idle.size, 0);
    assert.equal(idle.take('one.example'), null);
  } finally {
    idle.close();
    await sink.close();
  }
});
