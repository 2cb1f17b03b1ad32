#!/usr/bin/env node
/*
 * scripts/patch-dtbs.ts BOOTDIR: adds the front panel's LED and button nodes
 * (firmware/panel/board.ts, deviceTreeSource) to every board device tree in
 * BOOTDIR that a board profile names (pi3, pi4, cm4: their `deviceTrees`),
 * by decompiling it with dtc, appending the nodes and compiling it back.
 * Called by scripts/assemble-image.sh on the boot partition's files.
 *
 * Must never: leave a half-written DTB (the new one replaces the old by
 * rename), touch a file no profile names, or go on after dtc fails. A named
 * DTB that is not there is reported and skipped (Debian's firmware package
 * decides which boards it ships).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deviceTreeSource, loadProfile } from '../firmware/panel/board.ts';

const dir = process.argv[2];
if (!dir || process.argv.length !== 3) {
  process.stderr.write('usage: patch-dtbs.ts BOOTDIR\n');
  process.exit(2);
}
for (const board of ['pi3', 'pi4', 'cm4']) {
  const profile = loadProfile(board);
  const nodes = deviceTreeSource(profile);
  for (const name of profile.deviceTrees) {
    const file = join(dir, name);
    if (!existsSync(file)) {
      process.stderr.write(`patch-dtbs: ${name} (${board}) is not in ${dir}: skipped\n`);
      continue;
    }
    const source = execFileSync('dtc', ['-q', '-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8' });
    if (source.includes('moat-leds {') || source.includes('moat-button {')) throw new Error(`${file} has the front panel's nodes already`);
    const dtb = execFileSync('dtc', ['-q', '-I', 'dts', '-O', 'dtb', '-'], { input: source + nodes });
    writeFileSync(`${file}.new`, dtb);
    renameSync(`${file}.new`, file);
    process.stderr.write(`patch-dtbs: ${name}: the LEDs and the button of ${board}\n`);
  }
}
