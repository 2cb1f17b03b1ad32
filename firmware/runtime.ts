/*
 * runtime.ts: process-wide settings that must be in place before anything else
 * allocates or touches a file. Imported first by the daemon's entry point.
 *
 * V8's optimize-for-size mode keeps the heap small (smaller young generation,
 * earlier collections). Measured with the relay benchmark (10 KB x 5000, 20
 * sessions): peak RSS 220-240 MiB without it, 98-105 MiB with it, at the same
 * message rate within the run-to-run noise. A Pi has 1-8 GiB and other work to do.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--optimize-for-size');

/*
 * libuv's thread pool runs every file operation. A flush of the spool can hold a
 * thread for tens of milliseconds (hundreds on an SD card), and with the default
 * 4 threads the writes of incoming mail and the reads of outgoing mail queue
 * behind it. Measured with the relay benchmark on journaled ext4, medians of 3:
 * 10 KB x 5000: 548 -> 658 msgs/s; 1 MB x 200: 63.6 -> 68.1 msgs/s end to end.
 * The pool starts on its first use, which is after this line (a test pins it).
 */
process.env.UV_THREADPOOL_SIZE ??= '16';
