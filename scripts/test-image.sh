#!/usr/bin/env bash
# npm run test:image: installs what booting the image needs (QEMU for arm64, qemu-img),
# then builds, boots and checks the appliance image (scripts/test-image.ts says how).
# scripts/build-image.sh installs what building needs. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v qemu-system-aarch64 >/dev/null 2>&1 || need+=(qemu-system-arm)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v mcopy >/dev/null 2>&1 || need+=(mtools)
command -v sfdisk >/dev/null 2>&1 || need+=(fdisk)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-image: installing ${need[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
node_modules/.bin/tsup >/dev/null
exec node_modules/.bin/node scripts/test-image.ts "$@"   # --no-build: boot the image built last time
