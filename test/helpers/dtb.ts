// A minimal board device tree with the BCM2835-family GPIO controller where the Pi's DTBs have
// it, and dtc to compile and decompile (Debian's device-tree-compiler, from scripts/setup.sh).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

export const TINY_BOARD_DTS = `/dts-v1/;
/ {
	#address-cells = <1>;
	#size-cells = <1>;
	compatible = "raspberrypi,4-model-b", "brcm,bcm2711";
	soc {
		#address-cells = <1>;
		#size-cells = <1>;
		gpio@7e200000 {
			compatible = "brcm,bcm2711-gpio";
			reg = <0x7e200000 0xf4>;
			gpio-controller;
			#gpio-cells = <2>;
		};
	};
};
`;

/** Compiles DTS source into a DTB file. */
export function compileDtb(source: string, file: string): void {
  writeFileSync(file, execFileSync('dtc', ['-q', '-I', 'dts', '-O', 'dtb', '-'], { input: source }));
}

/** A DTB file back as DTS source. */
export function decompileDtb(file: string): string {
  return execFileSync('dtc', ['-q', '-I', 'dtb', '-O', 'dts', file], { encoding: 'utf8' });
}

/** The phandle dtc gave the node whose block starts with `header` in decompiled source. */
export function phandleOf(dts: string, header: string): string {
  const at = dts.indexOf(header);
  if (at < 0) throw new Error(`no ${header} in the device tree`);
  const m = /phandle = <(0x[0-9a-f]+)>;/.exec(dts.slice(at));
  if (!m) throw new Error(`${header} has no phandle`);
  return m[1]!;
}
