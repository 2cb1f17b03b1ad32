// A real clamd (Debian's clamav-daemon) for tests: started in the foreground
// on a unix socket and a loopback TCP port, with a database of the test's own
// signatures (no download, starts in about a second).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { closedPort } from './sink.ts';

export type Clamd = { socket: string; tcp: string; pid: number; stop(): Promise<void> };

/** ndb: lines of an .ndb file (Name:Target:Offset:HexSignature); port: a fixed TCP port (to kill it and start it again at the same address). */
export async function startClamd(ndb: string, opts: { port?: number } = {}): Promise<Clamd> {
  const dir = await mkdtemp(join(tmpdir(), 'moat-clamd-'));
  await writeFile(join(dir, 'moat-test.ndb'), ndb.endsWith('\n') ? ndb : ndb + '\n');
  const socket = join(dir, 'clamd.sock');
  const port = opts.port ?? (await closedPort());
  const conf = join(dir, 'clamd.conf');
  await writeFile(
    conf,
    [
      'Foreground yes',
      `DatabaseDirectory ${dir}`,
      `LocalSocket ${socket}`,
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `LogFile ${join(dir, 'clamd.log')}`,
      'Bytecode no',
      'StreamMaxLength 64M',
      'MaxThreads 4',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('clamd', [`--config-file=${conf}`], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (let i = 0; ; i++) {
    try {
      await access(socket);
      break;
    } catch {
      if (child.exitCode !== null || i > 300) {
        child.kill('SIGKILL');
        throw new Error(`clamd did not start (exit ${child.exitCode}); see ${join(dir, 'clamd.log')}`);
      }
      await sleep(50);
    }
  }
  return {
    socket,
    tcp: `127.0.0.1:${port}`,
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
