// The control socket's status carries moatd's event-loop delay since the previous status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSink } from './helpers/sink.ts';
import { startStoredMoat } from './helpers/control.ts';

test('status reports the event-loop delay since the previous status: a stall of the daemon shows', async () => {
  const sink = await startSink();
  const m = await startStoredMoat(sink.port);
  try {
    const ctl = await m.client();
    type Status = { eventLoopDelayMs: { p50: number; p99: number; max: number } };
    await ctl.request<Status>('status'); // starts a fresh window
    const until = Date.now() + 300;
    while (Date.now() < until); // the daemon runs in this process: its loop stalls too
    await new Promise((r) => setTimeout(r, 60));
    const s = await ctl.request<Status>('status');
    assert.ok(s.eventLoopDelayMs.max >= 200, `max ${s.eventLoopDelayMs.max} ms after a 300 ms stall`);
    assert.ok(s.eventLoopDelayMs.p50 <= s.eventLoopDelayMs.p99 && s.eventLoopDelayMs.p99 <= s.eventLoopDelayMs.max);
  } finally {
    await m.stop();
    await sink.close();
  }
});
