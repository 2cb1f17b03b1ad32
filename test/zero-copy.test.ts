// The zero-copy claim through the wire: for a plain message, the Buffer objects
// that reach the spool writer are the very objects smtp-server's data stream
// emitted (identity, not equality), after the scan chain looked at them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Spool } from '../firmware/queue/spool.ts';
import { createInbound } from '../firmware/smtp/inbound.ts';
import { RecipientDirectory } from '../firmware/policy/recipients.ts';
import { silentLogger } from '../firmware/log/logger.ts';
import { ScanService } from '../firmware/scan/build.ts';
import { testConfig } from './helpers/moat.ts';
import { RawSmtp } from './helpers/smtp-client.ts';

test('zero copy: every chunk the DATA stream emits reaches Incoming.write as the same Buffer object, in order', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'moat-zc-'));
  const config = testConfig(dataDir, [{ port: 9 }]);
  const log = silentLogger();
  const spool = await Spool.open({ dataDir, segmentBytes: config.storage.segmentBytes, minFreeBytes: config.storage.minFreeBytes, syncDelayMs: 0, log });
  const written: Buffer[] = [];
  const begin = spool.begin.bind(spool);
  spool.begin = () => {
    const inc = begin();
    const write = inc.write.bind(inc);
    inc.write = (parts: Buffer[]) => {
      written.push(...parts);
      return write(parts);
    };
    return inc;
  };
  const accepted: string[] = [];
  const server = createInbound({
    config,
    spool,
    recipients: new RecipientDirectory(config.inbound.recipients, () => [], { heloName: config.hostname }),
    scan: await ScanService.create(config, log),
    log,
    accepted: (m) => void accepted.push(m.id),
  });
  const emitted: Buffer[] = [];
  const onData = server.onData;
  server.onData = function (stream, session, cb) {
    stream.on('data', (c: Buffer) => emitted.push(c));
    return onData.call(this, stream, session, cb);
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const c = await RawSmtp.greeted((server.server.address() as AddressInfo).port);
    assert.match(await c.cmd('MAIL FROM:<alice@sender.example>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    const body = 'Subject: zero copy\r\n\r\n' + 'A plain line of mail text, about as long as mail lines are.\r\n'.repeat(20_000);
    c.write(body + '.\r\n');
    assert.match(await c.reply(), /^250 2\.0\.0 Ok: queued as /);
    await c.cmd('QUIT');
    c.destroy();
    assert.ok(emitted.length > 3, `several chunks (${emitted.length})`);
    assert.equal(written.length, emitted.length + 1, 'the Received header, then one write per chunk');
    emitted.forEach((e, i) => assert.ok(written[i + 1] === e, `chunk ${i} is the same object`));
    assert.equal(Buffer.concat(emitted).toString('latin1'), body);
    assert.equal(accepted.length, 1);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    await spool.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});
