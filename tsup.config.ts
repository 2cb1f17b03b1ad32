// Bundles the firmware's entry points into dist/ as ESM for Node 24.
// Native modules (serialport, later) stay external: their addons are found
// through __dirname and break when bundled (see ../shared/notes/dependencies.md).
import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { moatd: 'firmware/moatd.ts', 'moat-dev': 'firmware/dev/dev.ts', 'moat-panel': 'firmware/moat-panel.ts', 'moat-ctl': 'firmware/moat-ctl.ts' },
  format: ['esm'],
  target: 'node24',
  platform: 'node',
  sourcemap: true,
  clean: true,
  dts: false,
  splitting: false,
  external: ['serialport', '@serialport/bindings-cpp'],
  // pino and smtp-server use require() of node builtins from CJS parts
  banner: { js: "import { createRequire as __moatCreateRequire } from 'node:module'; const require = __moatCreateRequire(import.meta.url);" },
});
