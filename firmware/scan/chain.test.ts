// The whole scan chain as ScanService builds it, fed the way smtp-server feeds
// it: EICAR and other signatures are found in every encoding and nesting, at
// every split of the stream; attachment digests match .hdb/.hsb entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { parseConfig, type ConfigInput } from '../config/schema.ts';
import { silentLogger } from '../log/logger.ts';
import { ScanService } from './build.ts';
import { Chain, type Verdict } from './pipeline.ts';
import { EICAR_BYTES } from './signatures/index.ts';

const config = (scan: ConfigInput['scan'] = {}) =>
  parseConfig({
    hostname: 'mx.example.com',
    inbound: { localDomains: ['example.com'], maxMessageSize: 50 * 1024 * 1024 },
    internal: { servers: [{ host: '127.0.0.1', port: 2222 }] },
    storage: { dataDir: '/nonexistent' },
    scan,
  });

async function run(service: ScanService, chunks: Buffer[]): Promise<Verdict | null> {
  const chain = new Chain(service.stages({ cid: 't', ip: '127.0.0.1' }), () => true);
  for (const c of chunks) chain.push(c);
  return chain.finish();
}

const compose = (m: Mail.Options) => new MailComposer({ from: 'a@sender.example', to: 'b@example.com', subject: 'eicar', ...m }).compile().build();

const eicar = EICAR_BYTES.toString('latin1');

async function eicarCorpus(): Promise<Record<string, Buffer>> {
  return {
    'plain body': await compose({ text: `before\r\n${eicar}\r\nafter` }),
    'base64 attachment': await compose({ text: 'x', attachments: [{ filename: 'eicar.com.txt', content: Buffer.concat([randomBytes(1000), EICAR_BYTES, randomBytes(1000)]) }] }),
    'quoted-printable part': await compose({ text: 'x', attachments: [{ filename: 'e.txt', content: `line\r\n${eicar} tail é\r\n`, contentTransferEncoding: 'quoted-printable' }] }),
    'nested multipart': await compose({
      text: 'x',
      html: '<p>x</p>',
      attachments: [
        { filename: 'inline.png', content: randomBytes(300), cid: 'c1' },
        { filename: 'fwd.eml', contentType: 'message/rfc822', content: await compose({ text: 'inner', attachments: [{ filename: 'in.bin', content: EICAR_BYTES }] }) },
      ],
    }),
  };
}

test('EICAR is found in a plain body, a base64 attachment, a quoted-printable part and a nested multipart', async () => {
  const service = await ScanService.create(config(), silentLogger());
  for (const [name, msg] of Object.entries(await eicarCorpus())) {
    const v = await run(service, [msg]);
    assert.equal(v?.code, 550, name);
    assert.match(v!.text, /^5\.7\.1 Message content rejected: Eicar-Test-Signature found$/, name);
  }
  assert.equal(await run(service, [await compose({ text: 'clean', attachments: [{ filename: 'a.bin', content: randomBytes(5000) }] })]), null);
});

test('EICAR in a base64 attachment is found at every split offset of the message', async () => {
  const service = await ScanService.create(config(), silentLogger());
  const msg = (await eicarCorpus())['base64 attachment']!;
  for (let k = 0; k <= msg.length; k++) assert.equal((await run(service, [msg.subarray(0, k), msg.subarray(k)]))?.stage, 'signatures', `split at ${k}`);
});

test('property: EICAR anywhere in any encoding, any chunking, is found; the same message without it passes', async () => {
  const service = await ScanService.create(config(), silentLogger());
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 0, maxLength: 3000 }),
      fc.nat(3000),
      fc.constantFrom<'base64' | 'quoted-printable' | '7bit'>('base64', 'quoted-printable', '7bit'),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 20 }),
      fc.boolean(),
      async (noise, at, encoding, sizes, plant) => {
        const text = encoding === '7bit';
        const base = text ? Buffer.from(Buffer.from(noise).toString('base64')) : Buffer.from(noise);
        const pos = Math.min(at, base.length);
        const content = plant ? Buffer.concat([base.subarray(0, pos), EICAR_BYTES, base.subarray(pos)]) : base;
        const msg = await compose({ text: 'x', attachments: [{ filename: 'f.dat', content, contentTransferEncoding: encoding === '7bit' ? undefined : encoding }] });
        const chunks: Buffer[] = [];
        for (let i = 0, k = 0; i < msg.length; k++) {
          const n = sizes[k % sizes.length]!;
          chunks.push(msg.subarray(i, i + n));
          i += n;
        }
        const v = await run(service, chunks);
        assert.equal(v?.reason.startsWith('signature Eicar-Test-Signature') ?? false, plant, `planted ${plant}, got ${v?.reason}`);
      },
    ),
    { seed: 2026, numRuns: 150 },
  );
});

test('.hdb and .hsb: an attachment whose digest and size are listed is refused; one byte different passes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-sigs-'));
  try {
    const file = randomBytes(4000);
    const md5 = createHash('md5').update(file).digest('hex');
    const sha = createHash('sha256').update(file).digest('hex');
    await writeFile(join(dir, 'a.hdb'), `${md5}:${file.length}:Moat.Test.Md5\n`);
    await writeFile(join(dir, 'b.hsb'), `${sha}:*:Moat.Test.Sha256\n`);
    for (const [f, want] of [['a.hdb', 'Moat.Test.Md5'], ['b.hsb', 'Moat.Test.Sha256']] as const) {
      const service = await ScanService.create(config({ signatures: { files: [join(dir, f)], eicar: false } }), silentLogger());
      const v = await run(service, [await compose({ text: 'x', attachments: [{ filename: 'doc.pdf', content: file }] })]);
      assert.equal(v?.text, `5.7.1 Message content rejected: ${want} found`);
      const other = Buffer.from(file);
      other[100] = other[100]! ^ 1;
      assert.equal(await run(service, [await compose({ text: 'x', attachments: [{ filename: 'doc.pdf', content: other }] })]), null);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('.ndb files load, and reloadSignatures swaps in a changed file; a broken file keeps the old set', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-sigs-'));
  try {
    const ndb = join(dir, 'local.ndb');
    const hex = (s: string) => Buffer.from(s).toString('hex');
    await writeFile(ndb, `Moat.Test.One:0:*:${hex('first-test-marker')}\n`);
    const service = await ScanService.create(config({ signatures: { files: [ndb] } }), silentLogger());
    const msg = (s: string) => compose({ text: `x ${s} y` });
    assert.match((await run(service, [await msg('first-test-marker')]))!.text, /Moat\.Test\.One/);
    assert.equal(await run(service, [await msg('second-test-marker')]), null);
    await writeFile(ndb, `Moat.Test.Two:0:*:${hex('second-test-marker')}\n`);
    await service.reloadSignatures();
    assert.match((await run(service, [await msg('second-test-marker')]))!.text, /Moat\.Test\.Two/);
    assert.equal(await run(service, [await msg('first-test-marker')]), null);
    await writeFile(ndb, 'not a signature line\n');
    await assert.rejects(service.reloadSignatures(), /local\.ndb:1/);
    assert.match((await run(service, [await msg('second-test-marker')]))!.text, /Moat\.Test\.Two/, 'the old set stays');
    assert.equal(service.signatures?.body, 2, 'Moat.Test.Two and EICAR');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a broken signature file stops the start with a message naming the file and line', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'moat-sigs-'));
  try {
    await writeFile(join(dir, 'bad.ndb'), 'Good.Sig:0:*:414243444546\nBad.Sig:0:*:zz\n');
    await assert.rejects(ScanService.create(config({ signatures: { files: [join(dir, 'bad.ndb')] } }), silentLogger()), /bad\.ndb:2/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
