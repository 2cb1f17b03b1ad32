/*
 * dev/dev.ts: a development gateway on localhost, for a first look and for
 * working on moat without a Pi.
 *
 * Starts, in one process: a stand-in internal mail server on 127.0.0.1:2222
 * that saves every message it receives as .dev/sink/*.eml and says so, and
 * moatd on 127.0.0.1:2525 with a self-signed certificate for STARTTLS (made
 * with openssl on first start), relaying for example.com. Everything lives
 * under .dev/ (or $MOAT_DEV_DIR). Never used on an appliance: the firmware's
 * own entry point is moatd.ts.
 */
import '../runtime.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { parseConfig } from '../config/schema.ts';
import { startDaemon } from '../daemon.ts';
import { createLogger } from '../log/logger.ts';

const dir = resolve(process.env.MOAT_DEV_DIR ?? '.dev');
const sinkDir = join(dir, 'sink');
mkdirSync(sinkDir, { recursive: true });
const keyFile = join(dir, 'tls-key.pem');
const certFile = join(dir, 'tls-cert.pem');
if (!existsSync(certFile)) {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '825', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    { stdio: 'ignore' },
  );
}
const configFile = join(dir, 'config.json');
if (!existsSync(configFile)) {
  writeFileSync(
    configFile,
    JSON.stringify(
      {
        hostname: 'mx.example.com',
        inbound: {
          listen: '127.0.0.1:2525',
          localDomains: ['example.com'],
          recipients: { mode: 'any' },
          tls: { certFile, keyFile },
        },
        internal: { servers: [{ host: '127.0.0.1', port: 2222, priority: 10, weight: 1, tls: 'none' }], networks: ['127.0.0.0/8'] },
        queue: { minRetryMs: 5000, maxRetryMs: 60000 },
        storage: { dataDir: join(dir, 'data'), minFreeBytes: 16777216 },
        log: { level: 'info' },
      },
      null,
      2,
    ) + '\n',
  );
}

let n = 0;
const sink = new SMTPServer({
  name: 'internal.dev.test',
  banner: 'development sink standing in for the internal mail server',
  disableReverseLookup: true,
  authOptional: true,
  hideSTARTTLS: true,
  logger: false,
  onData(stream, session, cb) {
    const parts: Buffer[] = [];
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('end', () => {
      const file = join(sinkDir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${++n}.eml`);
      writeFileSync(file, Buffer.concat(parts));
      const to = session.envelope.rcptTo.map((r) => r.address).join(', ');
      process.stderr.write(`\n[internal server] received a message for ${to}, saved as ${file}\n\n`);
      cb();
    });
  },
});
sink.on('error', () => undefined);
await new Promise<void>((r) => sink.listen(2222, '127.0.0.1', () => r()));

const config = parseConfig(JSON.parse(readFileSync(configFile, 'utf8')));
const log = createLogger(config.log.level);
const daemon = await startDaemon(config, log);
process.stderr.write(
  [
    '',
    `moat development gateway: SMTP on 127.0.0.1:${daemon.port} (STARTTLS, self-signed), relaying for example.com`,
    'stand-in internal mail server on 127.0.0.1:2222, messages saved in ' + sinkDir,
    `configuration: ${configFile}`,
    '',
    'Try it:  swaks --server 127.0.0.1:2525 --from you@example.net --to user@example.com --tls',
    '         swaks --server 127.0.0.1:2525 --from you@example.net --to user@elsewhere.net   (refused: 554 5.7.1)',
    '',
    '',
  ].join('\n'),
);
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    void daemon.close().then(() => sink.close(() => process.exit(0)));
  });
