// STARTTLS on both sides: Internet clients to moat, and moat to the internal servers,
// with certificate verification against the organisation's own CA.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import { makePki } from './helpers/certs.ts';
import { startSink } from './helpers/sink.ts';
import { startMoat } from './helpers/moat.ts';

const pki = makePki('internal.example.com');
const other = makePki('internal.example.com'); // same name, signed by a CA moat does not trust

async function sendTls(port: number, ca: string) {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, requireTLS: true, tls: { ca, servername: 'internal.example.com' } });
  try {
    return await t.sendMail({ envelope: { from: 'a@sender.example', to: ['bob@example.com'] }, raw: 'Subject: tls\r\n\r\nsecret\r\n' });
  } finally {
    t.close();
  }
}

test('inbound STARTTLS with the configured certificate; Received says ESMTPS; delivery over verified STARTTLS', async () => {
  const sink = await startSink({ server: { hideSTARTTLS: false, key: pki.key, cert: pki.cert } });
  const moat = await startMoat([{ port: sink.port, tls: 'required' }], {
    inbound: { tls: { certFile: pki.certFile, keyFile: pki.keyFile } },
    internal: { servers: [{ host: '127.0.0.1', port: sink.port, tls: 'required', verifyCertificate: true, caFile: pki.caFile, servername: 'internal.example.com' }] },
  });
  try {
    const info = await sendTls(moat.port, pki.ca);
    assert.match(info.response, /^250 2\.0\.0 /);
    const [m] = await sink.waitFor(1);
    assert.equal(m!.secure, true, 'moat used STARTTLS to the internal server');
    assert.match(m!.body.toString(), /with ESMTPS id [0-9A-F]{16}/);
  } finally {
    await moat.stop();
    await sink.close();
  }
});

test('an internal server whose certificate does not verify gets nothing; the next server does', async () => {
  const impostor = await startSink({ server: { hideSTARTTLS: false, key: other.key, cert: other.cert } });
  const good = await startSink({ server: { hideSTARTTLS: false, key: pki.key, cert: pki.cert } });
  const common = { host: '127.0.0.1', tls: 'required' as const, verifyCertificate: true, caFile: pki.caFile, servername: 'internal.example.com' };
  const moat = await startMoat([], {
    internal: { servers: [{ ...common, port: impostor.port, priority: 1 }, { ...common, port: good.port, priority: 2 }] },
  });
  try {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: moat.port, secure: false, ignoreTLS: true });
    await t.sendMail({ envelope: { from: 'a@sender.example', to: ['bob@example.com'] }, raw: 'Subject: x\r\n\r\ny\r\n' });
    t.close();
    await good.waitFor(1);
    assert.equal(impostor.messages.length, 0);
  } finally {
    await moat.stop();
    await impostor.close();
    await good.close();
  }
});

test('tls "required" with a server that offers no STARTTLS: the message waits in the queue', async () => {
  const plain = await startSink({ server: { disabledCommands: ['STARTTLS'] } });
  const moat = await startMoat([{ port: plain.port, tls: 'required' }]);
  try {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: moat.port, secure: false, ignoreTLS: true });
    await t.sendMail({ envelope: { from: 'a@sender.example', to: ['bob@example.com'] }, raw: 'Subject: x\r\n\r\ny\r\n' });
    t.close();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(plain.messages.length, 0);
    assert.equal(moat.spool.messages.size, 1);
  } finally {
    await moat.stop();
    await plain.close();
  }
});
