/*
 * dev/dev.ts: a development gateway on localhost, for a first look and for
 * working on moat without a Pi.
 *
 * Starts, in one process: a stand-in internal mail server on 127.0.0.1:2222
 * that saves every message it receives as .dev/sink/*.eml and says so, and
 * moatd on 127.0.0.1:2525 with a self-signed certificate for STARTTLS (made
 * with openssl on first start), relaying for example.com, with its
 * configuration store and control socket, and moat-panel (dist/moat-panel.js,
 * a child process) on one end of a socat pseudo-terminal pair, so the serial
 * console can be tried with screen or socat on the other end. Network files go
 * to .dev/os/. Everything lives under .dev/ (or $MOAT_DEV_DIR). Never used on
 * an appliance: the firmware's own entry points are moatd.ts and moat-panel.ts.
 */
import '../runtime.ts';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';
import { parseConfig, type Config } from '../config/schema.ts';
import { ConfigStore } from '../config/store.ts';
import { startDaemon } from '../daemon.ts';
import { createLogger } from '../log/logger.ts';
import { LogRing } from '../log/ring.ts';

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
        // 127.0.0.1 plays the Internet; 127.0.0.3 plays an internal server that may send outward
        internal: { servers: [{ host: '127.0.0.1', port: 2222, priority: 10, weight: 1, tls: 'none' }], networks: ['127.0.0.3/32'] },
        queue: { minRetryMs: 5000, maxRetryMs: 60000 },
        storage: { dataDir: join(dir, 'data'), minFreeBytes: 16777216 },
        log: { level: 'info' },
        console: { device: join(dir, 'tty-panel') },
        control: { socket: join(dir, 'control.sock') },
        network: { filesRoot: join(dir, 'os') },
        panel: { board: 'simulator', ledsRoot: dir, buttonDevice: '' },
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

const store = await ConfigStore.open<Config>(configFile, { validate: parseConfig });
if (store.revisions().length === 0) await store.commit(store.document, { user: 'dev', comment: 'initial revision' });
const config = store.config;
const ring = new LogRing();
const log = createLogger(config.log.level, undefined, ring);
const daemon = await startDaemon(config, log, { store, ring });

// the serial console: moat-panel on one end of a pseudo-terminal pair, you on the other
const children: ChildProcess[] = [];
const tty = join(dir, 'tty');
let consoleNote = 'serial console: not started (socat is missing: apt-get install socat)';
try {
  execFileSync('socat', ['-V'], { stdio: 'ignore' });
  const socat = spawn('socat', [`pty,raw,echo=0,link=${config.console.device}`, `pty,raw,echo=0,link=${tty}`], { stdio: 'ignore' });
  children.push(socat);
  for (let i = 0; i < 100 && !(existsSync(config.console.device) && existsSync(tty)); i++) await new Promise((r) => setTimeout(r, 20));
  const panelJs = join(dirname(fileURLToPath(import.meta.url)), 'moat-panel.js');
  children.push(spawn(process.execPath, [panelJs, '--config', configFile, '--dev'], { stdio: ['ignore', 'inherit', 'inherit'] }));
  consoleNote = `serial console: screen ${tty} 115200   (or: socat -,raw,echo=0 ${tty}); log in as admin, password moat`;
} catch {
  /* no socat: the gateway runs without its console */
}
process.stderr.write(
  [
    '',
    `moat development gateway: SMTP on 127.0.0.1:${daemon.port} (STARTTLS, self-signed), relaying for example.com`,
    'stand-in internal mail server on 127.0.0.1:2222, messages saved in ' + sinkDir,
    `configuration: ${configFile} (revisions in ${configFile}.d/), control socket ${config.control.socket}`,
    consoleNote,
    `moat ctl:       node dist/moat-ctl.js --config ${configFile} show status`,
    '',
    'Try it:  swaks --server 127.0.0.1:2525 --helo client.example.net --from you@example.net --to user@example.com --tls',
    '         swaks --server 127.0.0.1:2525 --helo client.example.net --from you@example.net --to user@elsewhere.net   (refused: 554 5.7.1)',
    '',
    '',
  ].join('\n'),
);
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    for (const c of children) c.kill('SIGTERM');
    void daemon.close().then(() => sink.close(() => process.exit(0)));
  });
