// The signature file loaders, on real files: good files with every kept and
// skipped form, and every kind of malformed line failing with file:line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { loadSignatureFiles, literalSignature, EICAR, EICAR_BYTES, SignatureFileError, MAX_LINE } from './load.ts';
import { compileSignatures } from './compile.ts';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'moat-sigs-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('EICAR is the standard 68-byte string, built into every loaded set', async () => {
  assert.equal(EICAR_BYTES.length, 68);
  assert.equal(createHash('md5').update(EICAR_BYTES).digest('hex'), '44d88612fea8a8f36de82e1278abb02f');
  assert.equal(EICAR.name, 'Eicar-Test-Signature');
  const set = await loadSignatureFiles([]);
  assert.deepEqual(set, { body: [EICAR], hashes: [], warnings: [] });
});

test('literalSignature matches its bytes exactly; too short a literal is refused', async () => {
  const sig = literalSignature('Rule.x', Buffer.from('a*(b)?', 'latin1'));
  assert.deepEqual(sig, { name: 'Rule.x', hex: '612a2862293f', offset: '*' });
  const db = await compileSignatures({ body: [sig], hashes: [], warnings: [] });
  assert.equal(db.newScanner().push(Buffer.from('xx a*(b)? yy')), 'Rule.x');
  assert.equal(db.newScanner().push(Buffer.from('xx a*(b) yy')), null);
  assert.throws(() => literalSignature('Rule.y', Buffer.from('a')), /at least 2 bytes/);
  assert.throws(() => literalSignature('', Buffer.from('ab')), /name/);
});

test('a good .ndb: kept target types and offsets, comments, CRLF; the rest skipped and counted', async () => {
  await withDir(async (dir) => {
    const f = join(dir, 'local.ndb');
    await writeFile(
      f,
      [
        '# local signatures',
        'Any.One:0:*:414243444546',
        'Mail.Two:4:*:4142*4344{2-4}4546:73',
        'Text.Three:7:10:(6162|6364)656667??68:51:255\r',
        'Range.Four:0:5,10:7a7a7a7a',
        '',
        'Pe.Five:1:*:4d5a9000',
        'Ep.Six:0:EP+0:e800000000',
        'Eof.Seven:0:EOF-10:41424344',
        'Sect.Eight:0:S2+4:41424344',
        'Neg.Nine:0:*:4142!(4344)4546',
        'Neg.Ten:0:*:4142!(4344)4546',
        'Html.Eleven:3:*:3c736372697074',
        '',
      ].join('\n'),
    );
    const set = await loadSignatureFiles([f]);
    assert.deepEqual(set.body, [
      EICAR,
      { name: 'Any.One', hex: '414243444546', offset: '*' },
      { name: 'Mail.Two', hex: '4142*4344{2-4}4546', offset: '*' },
      { name: 'Text.Three', hex: '(6162|6364)656667??68', offset: 10 },
      { name: 'Range.Four', hex: '7a7a7a7a', offset: [5, 10] },
    ]);
    // the exact counts, whatever the order
    const counts = Object.fromEntries(set.warnings.map((w) => [/skipped: (.*) \(first at/.exec(w)![1]!, Number(/: (\d+) signature/.exec(w)![1])]));
    assert.deepEqual(counts, {
      'target type 1 (only 0, 4 and 7 are scanned)': 1,
      'target type 3 (only 0, 4 and 7 are scanned)': 1,
      'offset EP+n (needs a file-format parser)': 1,
      'offset EOF-n (needs a file-format parser)': 1,
      'offset Sn+n (needs a file-format parser)': 1,
      'negated alternation !(…)': 2,
    });
    assert.ok(set.warnings.includes(`${f}: 2 signature(s) skipped: negated alternation !(…) (first at ${f}:11)`));
    assert.ok(set.warnings.includes(`${f}: 1 signature(s) skipped: target type 3 (only 0, 4 and 7 are scanned) (first at ${f}:13)`));
    // and what was kept works
    const db = await compileSignatures(set);
    assert.equal(db.newScanner().push(Buffer.from('..ABCDEF..')), 'Any.One');
    assert.equal(db.newScanner().push(Buffer.from('AB....CD..EF')), 'Mail.Two');
    assert.equal(db.newScanner().push(Buffer.from('0123456789cdefg_h')), 'Text.Three');
    assert.equal(db.newScanner().push(Buffer.from('123456789cdefg_h')), null, 'Text.Three only at offset 10');
    assert.equal(db.newScanner().push(Buffer.from('0123456zzzz')), 'Range.Four');
    assert.equal(db.newScanner().push(Buffer.from('zzzz')), null, 'Range.Four starts at 5..15');
  });
});

test('good .hdb and .hsb files', async () => {
  await withDir(async (dir) => {
    const md5 = createHash('md5').update('hello').digest('hex');
    const sha1 = createHash('sha1').update('hello').digest('hex');
    const sha256 = createHash('sha256').update('hello').digest('hex');
    await writeFile(join(dir, 'a.hdb'), `${md5.toUpperCase()}:5:Md5.Hello\n44d88612fea8a8f36de82e1278abb02f:*:Md5.Any:73\n`);
    await writeFile(join(dir, 'b.HSB'), `${sha1}:5:Sha1.Hello\r\n${sha256}:*:Sha256.Hello\r\n`);
    const set = await loadSignatureFiles([join(dir, 'a.hdb'), join(dir, 'b.HSB')]);
    assert.deepEqual(set.hashes, [
      { name: 'Md5.Hello', kind: 'md5', digest: md5, size: 5 },
      { name: 'Md5.Any', kind: 'md5', digest: '44d88612fea8a8f36de82e1278abb02f', size: '*' },
      { name: 'Sha1.Hello', kind: 'sha1', digest: sha1, size: 5 },
      { name: 'Sha256.Hello', kind: 'sha256', digest: sha256, size: '*' },
    ]);
    const db = await compileSignatures(set);
    assert.equal(db.hashCount, 4);
    assert.deepEqual([...db.hashKinds].sort(), ['md5', 'sha1', 'sha256']);
    const d = (k: string, s: string) => createHash(k).update(s).digest();
    assert.equal(db.lookupHash('md5', d('md5', 'hello'), 5), 'Md5.Hello');
    assert.equal(db.lookupHash('md5', d('md5', 'hello'), 6), null, 'the size must match');
    assert.equal(db.lookupHash('md5', d('md5', 'hellO'), 5), null);
    assert.equal(db.lookupHash('md5', createHash('md5').update(EICAR_BYTES).digest(), 12345), 'Md5.Any', 'size *');
    assert.equal(db.lookupHash('sha1', d('sha1', 'hello'), 5), 'Sha1.Hello');
    assert.equal(db.lookupHash('sha256', d('sha256', 'hello'), 999), 'Sha256.Hello');
    assert.equal(db.lookupHash('sha256', d('sha1', 'hello'), 5), null, 'the kind must match');
  });
});

test('malformed lines fail the load with file:line', async () => {
  const long = 'x'.repeat(MAX_LINE + 1);
  const cases: Array<[string, string, RegExp]> = [
    ['a.ndb', 'Good:0:*:41424344\nBad:0:*:414g\n', /a\.ndb:2: .*"g" at position 3/],
    ['a.ndb', 'Bad:0:*\n', /a\.ndb:1: expected Name:TargetType:Offset:HexSignature/],
    ['a.ndb', 'Bad:0:*:4142:1:2:3\n', /a\.ndb:1: expected/],
    ['a.ndb', 'Bad:x:*:4142\n', /a\.ndb:1: bad target type/],
    ['a.ndb', 'Bad:0:-5:4142\n', /a\.ndb:1: bad offset/],
    ['a.ndb', 'Bad:0:EP+x:4142\n', /a\.ndb:1: bad offset/],
    ['a.ndb', 'Bad:0:EP+0:41(42\n', /a\.ndb:1: unterminated/],
    ['a.ndb', 'Bad:0:*:4142:x\n', /a\.ndb:1: bad MinFL/],
    ['a.ndb', 'Bad:0:*:4142{5-2}4344\n', /a\.ndb:1: empty range/],
    ['a.ndb', ':0:*:41424344\n', /a\.ndb:1: empty signature name/],
    ['a.ndb', ' Bad:0:*:41424344\n', /a\.ndb:1: signature name with/],
    ['a.ndb', '\n\nBad\t:0:*:41424344\n', /a\.ndb:3: byte 0x09 in column 4/],
    ['a.ndb', 'Bad:0:*:4142\xe9\n', /a\.ndb:1: byte 0xe9/],
    ['a.ndb', `ok:0:*:41424344\n${long}\n`, /a\.ndb:2: line longer than/],
    ['a.hdb', '44d88612fea8a8f36de82e1278abb02f:68\n', /a\.hdb:1: expected Hash:Size:Name/],
    ['a.hdb', '44d88612fea8a8f36de82e1278abb02:68:X\n', /a\.hdb:1: hash must be 32 hex digits/],
    ['a.hdb', `${'a'.repeat(64)}:68:X\n`, /a\.hdb:1: hash must be 32 hex digits/],
    ['a.hdb', '44d88612fea8a8f36de82e1278abb02g:68:X\n', /a\.hdb:1: hash must/],
    ['a.hdb', '44d88612fea8a8f36de82e1278abb02f:-1:X\n', /a\.hdb:1: bad size/],
    ['a.hdb', '44d88612fea8a8f36de82e1278abb02f:68:\n', /a\.hdb:1: empty signature name/],
    ['a.hsb', `${'a'.repeat(50)}:68:X\n`, /a\.hsb:1: hash must be 32, 40 or 64/],
  ];
  await withDir(async (dir) => {
    for (const [name, text, re] of cases) {
      const f = join(dir, name);
      await writeFile(f, Buffer.from(text, 'latin1'));
      await assert.rejects(loadSignatureFiles([f]), (e: Error) => e instanceof SignatureFileError && re.test(e.message), `${JSON.stringify(text.slice(0, 60))} -> ${re}`);
    }
  });
});

test('unknown extensions, missing files and directories are errors naming the file', async () => {
  await withDir(async (dir) => {
    await writeFile(join(dir, 'x.ldb'), 'x\n');
    await mkdir(join(dir, 'd.ndb'));
    await assert.rejects(loadSignatureFiles([join(dir, 'x.ldb')]), /x\.ldb: unknown signature file type "\.ldb"/);
    await assert.rejects(loadSignatureFiles([join(dir, 'nope.ndb')]), /nope\.ndb: cannot read: .*ENOENT/);
    await assert.rejects(loadSignatureFiles([join(dir, 'd.ndb')]), /d\.ndb: cannot read: not a regular file/);
  });
});
