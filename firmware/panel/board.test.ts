import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOARDS, loadProfile, overlayLines } from './board.ts';
import { configSchema } from '../config/schema.ts';

test('every board profile in board/profiles loads; the panel.board setting names exactly these boards', () => {
  for (const b of BOARDS) assert.equal(loadProfile(b).name, b);
  const boardSetting = configSchema.shape.panel.unwrap().shape.board.unwrap();
  assert.deepEqual([...boardSetting.options].sort(), [...BOARDS].sort());
});

test('the overlay lines of the Pi 4 profile: one gpio-led per LED labelled with its name, then the gpio-key', () => {
  assert.deepEqual(overlayLines(loadProfile('pi4')), [
    'dtoverlay=gpio-led,gpio=17,label=moat:green:status,active_low=0,trigger=none',
    'dtoverlay=gpio-led,gpio=27,label=moat:red:fault,active_low=0,trigger=none',
    'dtoverlay=gpio-led,gpio=22,label=moat:yellow:activity,active_low=0,trigger=none',
    'dtoverlay=gpio-key,gpio=23,active_low=1,gpio_pull=2,keycode=408,label=moat-button',
  ]);
  assert.equal(loadProfile('pi5').uart, '/dev/ttyAMA0');
  assert.deepEqual(overlayLines(loadProfile('simulator')), []);
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
