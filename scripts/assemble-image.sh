#!/usr/bin/env bash
# assemble-image.sh: lays out the SD-card image from a finished root directory,
# without mounting anything (this kind of build machine cannot even mount FAT):
#
#   p1  boot  FAT32 "MOAT-BOOT"  Pi firmware and DTBs from ROOT/boot/firmware, the kernel
#                                and initrd from ROOT/boot (as vmlinuz, initrd.img),
#                                board/config.txt, the board DTBs with the front panel's nodes,
#                                board/cmdline.txt            (mkfs.vfat --invariant + mcopy)
#   p2  root  squashfs           ROOT without boot/firmware and the kernel copies; read-only
#                                by construction, bit-for-bit reproducible     (mksquashfs)
#   p3  data  ext4 "moat-data"   /moat (owned by moat, 990) with the factory configuration,
#                                /system/systemd for systemd's state     (mke2fs -d); grows
#                                to fill the card at first boot (moat-grow-data.service)
#
# MBR (the Pi 3's boot ROM reads nothing else), disk identifier 0x6d6f6174, so the
# root is PARTUUID=6d6f6174-02. Then IMAGE.bmap (bmaptool) and IMAGE.sha256.
# SOURCE_DATE_EPOCH fixes every time stamp.
#
#   scripts/assemble-image.sh --root DIR --output FILE [--boot-mib N] [--data-mib N]
#
# Must never mount, never modify ROOT, never build a shell command from input.
# Called by scripts/build-image.sh, and by test/image.test.ts on a small stand-in root.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT= OUTPUT= BOOT_MIB=128 DATA_MIB=256
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --output) OUTPUT=${2:?--output needs a file}; shift 2 ;;
    --boot-mib) BOOT_MIB=${2:?}; shift 2 ;;
    --data-mib) DATA_MIB=${2:?}; shift 2 ;;
    *) echo "assemble-image: unknown option $1" >&2; exit 2 ;;
  esac
done
die() { echo "assemble-image: $*" >&2; exit 1; }
[ -n "$ROOT" ] && [ -d "$ROOT" ] || die "--root DIR: not a directory: ${ROOT:-(none)}"
[ -n "$OUTPUT" ] || die "--output FILE is required"
[[ "$BOOT_MIB" =~ ^[0-9]+$ ]] && [ "$BOOT_MIB" -ge 64 ] || die "--boot-mib: at least 64"
[[ "$DATA_MIB" =~ ^[0-9]+$ ]] && [ "$DATA_MIB" -ge 16 ] || die "--data-mib: at least 16"
[ -d "$ROOT/boot/firmware" ] || die "$ROOT/boot/firmware is missing (raspi-firmware installs the Pi firmware there)"
kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)
initrd=$(find "$ROOT/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)
[ -n "$kernel" ] || die "no kernel (boot/vmlinuz-*) in $ROOT"
[ -n "$initrd" ] || die "no initramfs (boot/initrd.img-*) in $ROOT"
[ -f "$ROOT/usr/lib/moat/factory.json" ] || die "no factory configuration (usr/lib/moat/factory.json) in $ROOT"
for t in mkfs.vfat mcopy mksquashfs mke2fs sfdisk bmaptool dtc; do command -v "$t" >/dev/null || die "$t is missing (scripts/setup.sh installs it)"; done

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moat-assemble.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MOAT_UID=990 MOAT_GID=990

# --- p1: boot ---
B=$WORK/boot
mkdir "$B"
(cd "$ROOT/boot/firmware" && find . -mindepth 1 -maxdepth 1 ! -name config.txt ! -name cmdline.txt ! -name 'vmlinuz*' ! -name 'initrd.img*' -exec cp -r --no-preserve=ownership {} "$B/" \;)
cp "$kernel" "$B/vmlinuz"
cp "$initrd" "$B/initrd.img"
cp board/config.txt "$B/config.txt"
# the front panel's LEDs and button, added to each board's device tree (scripts/patch-dtbs.ts)
node_modules/.bin/node scripts/patch-dtbs.ts "$B"
cp board/cmdline.txt "$B/cmdline.txt"
find "$B" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
truncate -s "${BOOT_MIB}M" "$WORK/p1"
mkfs.vfat --invariant -F 32 -n MOAT-BOOT -i 6d6f6174 "$WORK/p1" >/dev/null
# sorted, so that the directory order (and the image) does not depend on readdir
(cd "$B" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort | while IFS= read -r f; do mcopy -s -m -p -i "$WORK/p1" "$f" ::/; done)

# --- p2: root (squashfs) ---
# (mksquashfs takes every time stamp from SOURCE_DATE_EPOCH)
mksquashfs "$ROOT" "$WORK/p2" -noappend -quiet -no-progress -comp zstd -Xcompression-level 12 -b 1M -processors 2 \
  -wildcards -e 'boot/firmware/*' 'boot/vmlinuz*' 'boot/initrd.img*' 'boot/System.map*' >/dev/null
ROOT_MIB=$(( ( $(stat -c %s "$WORK/p2") + 1048575 ) / 1048576 ))

# --- p3: data (ext4) ---
D=$WORK/data
mkdir -p "$D/moat/os" "$D/system/systemd"
cp "$ROOT/usr/lib/moat/factory.json" "$D/moat/config.json"
chmod 0750 "$D/moat"; chmod 0755 "$D/moat/os"; chmod 0640 "$D/moat/config.json"
chown -R "$MOAT_UID:$MOAT_GID" "$D/moat"
find "$D" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mke2fs -q -t ext4 -b 4096 -L moat-data -U 6d6f6174-0000-4000-8000-000000000003 -E root_owner=0:0,hash_seed=6d6f6174-0000-4000-8000-000000000000 \
  -d "$D" "$WORK/p3" "${DATA_MIB}M" >/dev/null
# mke2fs -d (1.47.0) copies each file's ctime, which touch cannot set: fix them to SOURCE_DATE_EPOCH
(cd "$D" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) | while IFS= read -r f; do
  printf 'sif "/%s" ctime @%s\n' "$f" "$SOURCE_DATE_EPOCH"
done > "$WORK/ctime.cmd"
printf 'sif / ctime @%s\nsif /lost+found ctime @%s\n' "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH" >> "$WORK/ctime.cmd"
debugfs -w -f "$WORK/ctime.cmd" "$WORK/p3" >/dev/null 2>&1

# --- the disk: MBR, partitions at whole MiB ---
s1=8192; n1=$(( BOOT_MIB * 2048 ))
s2=$(( s1 + n1 )); n2=$(( ROOT_MIB * 2048 ))
s3=$(( s2 + n2 )); n3=$(( DATA_MIB * 2048 ))
total=$(( s3 + n3 ))
mkdir -p "$(dirname "$OUTPUT")"
rm -f "$OUTPUT"
truncate -s $(( total * 512 )) "$OUTPUT"
sfdisk -q "$OUTPUT" >/dev/null <<EOF
label: dos
label-id: 0x6d6f6174
unit: sectors

start=$s1, size=$n1, type=c, bootable
start=$s2, size=$n2, type=83
start=$s3, size=$n3, type=83
EOF
dd if="$WORK/p1" of="$OUTPUT" bs=1M seek=$(( s1 / 2048 )) conv=notrunc,sparse status=none
dd if="$WORK/p2" of="$OUTPUT" bs=1M seek=$(( s2 / 2048 )) conv=notrunc,sparse status=none
dd if="$WORK/p3" of="$OUTPUT" bs=1M seek=$(( s3 / 2048 )) conv=notrunc,sparse status=none

bmaptool -q create -o "$OUTPUT.bmap" "$OUTPUT"
(cd "$(dirname "$OUTPUT")" && sha256sum "$(basename "$OUTPUT")" > "$(basename "$OUTPUT").sha256")
echo "assemble-image: $OUTPUT: boot ${BOOT_MIB} MiB, root ${ROOT_MIB} MiB (squashfs), data ${DATA_MIB} MiB" >&2
