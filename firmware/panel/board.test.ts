import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOARDS, deviceTreeSource, loadProfile } from './board.ts';
import { compileDtb, decompileDtb, phandleOf, TINY_BOARD_DTS } from '../../test/helpers/dtb.ts';
import { configSchema } from '../config/schema.ts';

test('every board profile in board/profiles loads; the panel.board setting names exactly these boards', () => {
  for (const b of BOARDS) assert.equal(loadProfile(b).name, b);
  const boardSetting = configSchema.shape.panel.unwrap().shape.board.unwrap();
  assert.deepEqual([...boardSetting.options].sort(), [...BOARDS].sort());
});

test('the Pi 4 profile\'s device-tree nodes compile into a board DTB: one LED per moat LED on its pin, the button with its pull and key code', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moat-dtb-'));
  const file = join(dir, 'board.dtb');
  compileDtb(TINY_BOARD_DTS + deviceTreeSource(loadProfile('pi4')), file);
  const dts = decompileDtb(file);
  const gpio = phandleOf(dts, 'gpio@7e200000 {');
  const pins = phandleOf(dts, 'moat-button-pins {');
  const leds = dts.slice(dts.indexOf('moat-leds {'), dts.indexOf('moat-button {'));
  assert.match(leds, /compatible = "gpio-leds";/);
  const got = [...leds.matchAll(/label = "([^"]+)";\s*gpios = <(0x[0-9a-f]+) (0x[0-9a-f]+) (0x[0-9a-f]+)>;/g)].map((m) => [m[1], m[2], Number(m[3]), Number(m[4])]);
  assert.deepEqual(got, [
    ['moat:green:status', gpio, 17, 0],
    ['moat:red:fault', gpio, 27, 0],
    ['moat:yellow:activity', gpio, 22, 0],
  ]);
  const button = dts.slice(dts.indexOf('moat-button {'));
  assert.match(button, /compatible = "gpio-keys";/);
  assert.match(button, new RegExp(`pinctrl-0 = <${pins}>;`));
  assert.match(button, new RegExp(`gpios = <${gpio} 0x17 0x01>;`), 'GPIO 23, active low');
  assert.match(button, /linux,code = <0x198>;/, 'KEY_RESTART');
  assert.match(dts.slice(dts.indexOf('moat-button-pins {')), /brcm,pins = <0x17>;\s*brcm,function = <0x00>;\s*brcm,pull = <0x02>;/, 'input with the pull-up');
  assert.equal(loadProfile('pi5').uart, '/dev/ttyAMA0');
  assert.equal(deviceTreeSource(loadProfile('simulator')), '');
});

test('a broken profile is refused with the file and the problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moat-board-'));
  const good = JSON.parse(JSON.stringify(loadProfile('pi3')));
  writeFileSync(join(dir, 'pi3.json'), JSON.stringify({ ...good, leds: { ...good.leds, 'moat:red:fault': { gpio: 17, activeLow: false } } }));
  assert.throws(() => loadProfile('pi3', dir), /pi3\.json: \(top level\): a GPIO is used twice/);
  writeFileSync(join(dir, 'pi3.json'), '{"name": "pi3",');
  assert.throws(() => loadProfile('pi3', dir), /pi3\.json: .*JSON/);
  const { 'moat:yellow:activity': _, ...two } = good.leds;
  writeFileSync(join(dir, 'pi3.json'), JSON.stringify({ ...good, leds: two }));
  assert.throws(() => loadProfile('pi3', dir), /missing LEDs: moat:yellow:activity/);
  writeFileSync(join(dir, 'pi4.json'), JSON.stringify(good));
  assert.throws(() => loadProfile('pi4', dir), /names board pi3/);
  assert.throws(() => loadProfile('../etc/passwd', dir), /unknown board/);
});
