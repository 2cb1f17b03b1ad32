/*
 * config/network-files.ts: the appliance's own network settings as the OS
 * files the image uses: systemd-networkd, /etc/hostname, resolv.conf and
 * systemd-timesyncd.
 *
 * renderNetworkFiles() turns the `network` section into file contents (pure);
 * writeNetworkFiles() writes those that differ from what is on disk, each
 * durably (temp file, fsync, rename, fsync of the directory), under
 * network.filesRoot (`/` on the appliance, a folder under .dev/ in
 * development; empty: nothing is written). Must never write a file whose
 * content is unchanged (SD cards wear out), never build a shell command, and
 * never restart services itself (the image's units watch the files).
 * Called by daemon.ts at start-up and after each applied commit.
 */
import { readFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Config } from './schema.ts';
import { nodeFs, writeFileDurably } from './store.ts';

export type NetworkFile = { path: string; content: string };

const HEADER = '# Written by moat from its configuration (network.*); changes here are overwritten on the next commit.\n';

export function renderNetworkFiles(net: Config['network'], smtpHostname: string): NetworkFile[] {
  const name = net.hostname ?? smtpHostname.split('.')[0]!;
  const unit = [HEADER, '[Match]', `Name=${net.interface}`, '', '[Network]'];
  if (net.mode === 'dhcp') unit.push('DHCP=yes');
  else {
    unit.push(`Address=${net.address}/${net.prefix}`);
    if (net.gateway) unit.push(`Gateway=${net.gateway}`);
  }
  for (const d of net.dnsServers) unit.push(`DNS=${d}`);
  for (const n of net.ntpServers) unit.push(`NTP=${n}`);
  const files: NetworkFile[] = [
    { path: 'etc/systemd/network/10-moat.network', content: unit.join('\n') + '\n' },
    { path: 'etc/hostname', content: `${name}\n` },
    { path: 'etc/systemd/timesyncd.conf.d/moat.conf', content: `${HEADER}[Time]\n${net.ntpServers.length ? `NTP=${net.ntpServers.join(' ')}` : '#NTP= (none set: the distribution\'s default pool)'}\n` },
  ];
  if (net.mode === 'static' || net.dnsServers.length)
    files.push({ path: 'etc/resolv.conf', content: HEADER + net.dnsServers.map((d) => `nameserver ${d}\n`).join('') });
  return files;
}

/** Writes the files that changed; returns their full paths. */
export async function writeNetworkFiles(net: Config['network'], smtpHostname: string): Promise<string[]> {
  if (net.filesRoot === '') return [];
  const written: string[] = [];
  for (const f of renderNetworkFiles(net, smtpHostname)) {
    const full = join(net.filesRoot, f.path);
    const old = await readFile(full, 'utf8').catch(() => null);
    if (old === f.content) continue;
    await mkdir(dirname(full), { recursive: true, mode: 0o755 });
    await writeFileDurably(nodeFs, full, f.content, 0o644); // world-readable, as these files must be
    written.push(full);
  }
  return written;
}
