// Signature files in a running moatd: a commit that names a new file compiles
// it before switching (a broken one refuses the commit), status shows what is
// loaded, and signatures.reload (as SIGHUP) swaps in an edited file or keeps
// the old set when the new one is broken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startSink } from './helpers/sink.ts';
import { RawSmtp } from './helpers/smtp-client.ts';
import { startStoredMoat } from './helpers/control.ts';
import { ControlError } from '../firmware/control/client.ts';

const hex = (s: string) => Buffer.from(s).toString('hex');

async function send(port: number, text: string): Promise<string> {
  const c = await RawSmtp.greeted(port);
  try {
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    return await c.cmd(`Subject: sig\r\n\r\n${text}\r\n.`);
  } finally {
    c.end();
  }
}

test('signature files: committed live, shown in status, reloaded on request; broken files change nothing', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const port = m.daemon.port;
    const file = join(m.dir, 'local.ndb');
    await writeFile(file, `Moat.Live.One:0:*:${hex('live-marker-one')}\n`);
    const ctl = await m.client();
    assert.match(await send(port, 'live-marker-one'), /^250 /, 'not a signature yet');
    await ctl.request('config.set', { path: 'scan.signatures.files', value: [file] });
    await ctl.request('config.commit', { user: 'admin' });
    assert.match(await send(port, 'x live-marker-one y'), /^550 5\.7\.1 Message content rejected: Moat\.Live\.One found/);
    const status = await ctl.request<{ signatures: { body: number; hashes: number } }>('status');
    assert.deepEqual(status.signatures, { body: 2, hashes: 0 }, 'the file and EICAR');

    await writeFile(file, `Moat.Live.Two:0:*:${hex('live-marker-two')}\n`);
    assert.deepEqual(await ctl.request('signatures.reload'), { body: 2, hashes: 0 });
    assert.match(await send(port, 'live-marker-two'), /^550 5\.7\.1 .*Moat\.Live\.Two/);
    assert.match(await send(port, 'live-marker-one'), /^250 /);

    await writeFile(file, 'Broken:0:*:zz\n');
    const e = await ctl.request('signatures.reload').then(() => null, (x: unknown) => x);
    assert.ok(e instanceof ControlError && e.code === 'failed' && /local\.ndb:1/.test(e.message), String(e));
    assert.match(await send(port, 'live-marker-two'), /^550 5\.7\.1 .*Moat\.Live\.Two/, 'the previous set stays');

    // a commit naming an unusable file is refused and changes nothing
    const before = m.store.runningRevision;
    await ctl.request('config.set', { path: 'scan.signatures.files', value: [file, join(m.dir, 'missing.hdb')] });
    const c = await ctl.request('config.commit', { user: 'admin' }).then(() => null, (x: unknown) => x);
    assert.ok(c instanceof ControlError, String(c));
    assert.equal(m.store.runningRevision, before);
    assert.match(await send(port, 'live-marker-two'), /^550 /);
  } finally {
    await m.stop();
    await sink.close();
  }
});
