/*
 * runtime.ts: process-wide settings that must be in place before anything else
 * allocates. Imported first by the daemon's entry point.
 *
 * V8's optimize-for-size mode keeps the heap small (smaller young generation,
 * earlier collections). Measured with the relay benchmark (10 KB x 5000, 20
 * sessions): peak RSS 220-240 MiB without it, 98-105 MiB with it, at the same
 * message rate within the run-to-run noise. A Pi has 1-8 GiB and other work to do.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--optimize-for-size');
