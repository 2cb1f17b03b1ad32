// A throw-away CA and a server certificate signed by it, made with openssl.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type TestPki = { dir: string; caFile: string; ca: string; key: Buffer; cert: Buffer; keyFile: string; certFile: string };

export function makePki(name = 'localhost'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'moat-pki-'));
  const f = (n: string) => join(dir, n);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=moat test CA']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${name}`]);
  writeFileSync(f('ext.cnf'), `subjectAltName=DNS:${name},IP:127.0.0.1\n`);
  run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
  return {
    dir,
    caFile: f('ca.pem'),
    ca: readFileSync(f('ca.pem'), 'utf8'),
    key: readFileSync(f('server.key')),
    cert: readFileSync(f('server.pem')),
    keyFile: f('server.key'),
    certFile: f('server.pem'),
  };
}
