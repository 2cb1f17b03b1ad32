#!/usr/bin/env bash
# flash.sh: builds the appliance image and writes it safely to an SD card.
#
#   ./flash.sh [--image FILE] [--config FILE] [--force] DEVICE   write to DEVICE (/dev/sdX)
#   ./flash.sh [--image FILE] [--config FILE] --output FILE      only make the image
#
# Without --image it builds one (scripts/build-image.sh, into out/moat.img). --config
# seeds the card's first configuration (domains, internal servers, network, admin
# password hash: any settings, laid over the factory configuration and validated by
# moatd's schema) onto the data partition, in the configuration store's format.
#
# Before writing it refuses: a DEVICE that is not a whole disk; the system disk (the
# disk of /, /boot, /usr, /var, /home or swap; --force does not change that); a disk
# with anything mounted; a disk that is neither removable nor on USB (unless --force);
# an image larger than the disk. It shows model and size and the admin must type the
# device's name. Then it writes with progress, syncs, reads the written range back
# and compares its SHA-256 with the image's.
#
# The block-device inspection reads MOAT_SYSFS (default /sys) and MOAT_PROC_MOUNTS
# (default /proc/mounts) and MOAT_PROC_SWAPS (default /proc/swaps), so that the tests
# can show it fake disks. Must never build a shell command from its arguments or
# write anywhere before the typed confirmation.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$PWD
SYSFS=${MOAT_SYSFS:-/sys}
MOUNTS=${MOAT_PROC_MOUNTS:-/proc/mounts}
SWAPS=${MOAT_PROC_SWAPS:-/proc/swaps}

die() { printf 'flash.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

IMAGE= CONFIG= OUTPUT= FORCE=0 DEVICE=
while [ $# -gt 0 ]; do
  case "$1" in
    --image) IMAGE=${2:?--image needs a file}; shift 2 ;;
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --output) OUTPUT=${2:?--output needs a file}; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see ./flash.sh --help)" ;;
    *) [ -z "$DEVICE" ] || die "one device at a time: $DEVICE and $1"; DEVICE=$1; shift ;;
  esac
done
[ -n "$DEVICE" ] || [ -n "$OUTPUT" ] || { usage >&2; exit 2; }
[ -z "$DEVICE" ] || [ -z "$OUTPUT" ] || die "give either DEVICE or --output FILE, not both"
[ -z "$IMAGE" ] || [ -f "$IMAGE" ] || die "no such image: $IMAGE"
[ -z "$CONFIG" ] || [ -f "$CONFIG" ] || die "no such configuration file: $CONFIG"

# --- the device: everything is checked before the image is built or anything is written ---
disk_of() { # NAME of a block device (partition or disk) -> its disk's name, or nothing
  local n=$1 d
  if [ -d "$SYSFS/block/$n" ]; then echo "$n"; return; fi
  for d in "$SYSFS"/block/*; do [ -e "$d/$n/partition" ] && { basename "$d"; return; }; done
  return 0
}
disks_of_source() { # a mount or swap source -> the disks under it (through device-mapper slaves)
  local src=$1 n s
  case "$src" in /dev/*) ;; *) return 0 ;; esac
  n=$(basename "$(readlink -f "$src" 2>/dev/null || echo "$src")")
  if [ -d "$SYSFS/block/$n/slaves" ] && [ -n "$(ls -A "$SYSFS/block/$n/slaves" 2>/dev/null)" ]; then
    for s in "$SYSFS/block/$n/slaves"/*; do disk_of "$(basename "$s")"; done
  else
    disk_of "$n"
  fi
}
check_device() {
  [ -b "$DEVICE" ] || die "$DEVICE is not a block device"
  NAME=$(basename "$(readlink -f "$DEVICE")")
  [ -d "$SYSFS/block/$NAME" ] || {
    local d; d=$(disk_of "$NAME")
    die "$DEVICE is ${d:+a partition of /dev/$d, }not a whole disk: give the disk (/dev/${d:-sdX})"
  }
  local src mnt rest
  while read -r src mnt rest; do
    for d in $(disks_of_source "$src"); do
      [ "$d" = "$NAME" ] || continue
      case "$mnt" in
        /|/boot|/boot/*|/usr|/var|/home|/etc) die "$DEVICE is the system disk ($src is mounted on $mnt): refused" ;;
        *) die "$DEVICE is in use: $src is mounted on $mnt (unmount it first)" ;;
      esac
    done
  done < "$MOUNTS"
  if [ -r "$SWAPS" ]; then
    while read -r src rest; do
      [ "$src" = Filename ] && continue
      for d in $(disks_of_source "$src"); do [ "$d" = "$NAME" ] && die "$DEVICE is the system disk ($src is swap): refused"; done
    done < "$SWAPS"
  fi
  local removable usb=0
  removable=$(cat "$SYSFS/block/$NAME/removable" 2>/dev/null || echo 0)
  case "$(readlink -f "$SYSFS/block/$NAME")" in */usb*) usb=1 ;; esac
  if [ "$removable" != 1 ] && [ "$usb" != 1 ] && [ "$FORCE" != 1 ]; then
    die "$DEVICE is not a removable disk (nor on USB): refused; --force if you are sure"
  fi
  SIZE=$(( $(cat "$SYSFS/block/$NAME/size") * 512 ))
  MODEL=$( { cat "$SYSFS/block/$NAME/device/vendor" 2>/dev/null || true; cat "$SYSFS/block/$NAME/device/model" 2>/dev/null || true; } | tr -s ' \n' ' ' | sed 's/ $//')
}
[ -z "$DEVICE" ] || check_device

# --- the image ---
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moat-flash.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -z "$IMAGE" ]; then
  IMAGE=out/moat.img
  [ -n "$OUTPUT" ] && [ -z "$CONFIG" ] && IMAGE=$OUTPUT
  bash scripts/build-image.sh --output "$IMAGE"
fi

seed() { # IMAGE CONFIG OUT: OUT is IMAGE with CONFIG on its data partition (partition 3)
  local img=$1 cfg=$2 out=$3 start size
  command -v debugfs >/dev/null || die "debugfs is missing (apt-get install e2fsprogs)"
  read -r start size < <(sfdisk -d "$img" | awk -F'[=,]' '/^[^ ]+3 : /{gsub(/ /,""); print $2, $4}')
  [ -n "$start" ] || die "$img has no partition 3 (the data partition): not a moat image"
  dd if="$img" of="$WORK/p3" bs=512 skip="$start" count="$size" status=none
  debugfs -R 'cat moat/config.json' "$WORK/p3" > "$WORK/factory.json" 2>/dev/null
  [ -s "$WORK/factory.json" ] || die "$img: no moat/config.json on its data partition: not a moat image"
  debugfs -R 'stat moat/config.json.d' "$WORK/p3" 2>/dev/null | grep -q Inode && die "$img: its data partition has configuration revisions already (seeded before)"
  node_modules/.bin/node scripts/seed-config.ts --factory "$WORK/factory.json" --seed "$cfg" --out "$WORK/seed" >/dev/null ||
    die "$cfg: not a usable configuration (see above); nothing written"
  local rev; rev=$(cd "$WORK/seed/config.json.d" && ls)
  cat > "$WORK/debugfs.cmd" <<EOF
rm moat/config.json
write $WORK/seed/config.json moat/config.json
sif moat/config.json uid 990
sif moat/config.json gid 990
sif moat/config.json mode 0100640
mkdir moat/config.json.d
sif moat/config.json.d uid 990
sif moat/config.json.d gid 990
sif moat/config.json.d mode 040700
write $WORK/seed/config.json.d/$rev moat/config.json.d/$rev
sif moat/config.json.d/$rev uid 990
sif moat/config.json.d/$rev gid 990
sif moat/config.json.d/$rev mode 0100600
EOF
  debugfs -w -f "$WORK/debugfs.cmd" "$WORK/p3" >/dev/null 2>"$WORK/debugfs.err" || die "debugfs: $(cat "$WORK/debugfs.err")"
  e2fsck -fn "$WORK/p3" >/dev/null 2>&1 || die "the seeded data partition does not pass e2fsck"
  [ "$img" = "$out" ] || cp --sparse=always "$img" "$out"
  dd if="$WORK/p3" of="$out" bs=512 seek="$start" conv=notrunc,sparse status=none
  echo "flash.sh: configuration from $cfg seeded onto the data partition (revision 1)" >&2
}
if [ -n "$CONFIG" ]; then
  target=${OUTPUT:-$WORK/seeded.img}
  seed "$IMAGE" "$CONFIG" "$target"
  IMAGE=$target
elif [ -n "$OUTPUT" ] && [ "$IMAGE" != "$OUTPUT" ]; then
  cp --sparse=always "$IMAGE" "$OUTPUT"
fi
if [ -n "$OUTPUT" ]; then
  (cd "$(dirname "$OUTPUT")" && sha256sum "$(basename "$OUTPUT")" > "$(basename "$OUTPUT").sha256")
  echo "flash.sh: image in $OUTPUT ($OUTPUT.sha256)" >&2
  exit 0
fi

# --- write ---
ISIZE=$(stat -c %s "$IMAGE")
[ "$ISIZE" -le "$SIZE" ] || die "the image ($ISIZE bytes) does not fit on $DEVICE ($SIZE bytes)"
human() { awk -v b="$1" 'BEGIN { split("B KB MB GB TB", u); i = 1; while (b >= 1000 && i < 5) { b /= 1000; i++ } printf "%.1f %s", b, u[i] }'; }
echo "Device: $DEVICE (${MODEL:-unknown model}), $(human "$SIZE")"
echo "Image:  $IMAGE, $(human "$ISIZE")"
echo "Everything on $DEVICE will be lost."
printf 'Type the device name (%s) to write it, anything else cancels: ' "$NAME"
typed=
read -r typed || true
if [ "$typed" != "$NAME" ] && [ "$typed" != "/dev/$NAME" ]; then
  echo
  die "cancelled: \"$typed\" is not $NAME; nothing written"
fi
want=$(sha256sum "$IMAGE" | cut -d' ' -f1)
dd if="$IMAGE" of="$DEVICE" bs=4M conv=fsync oflag=direct status=progress
sync
blockdev --flushbufs "$DEVICE" 2>/dev/null || true
echo "flash.sh: reading back $(human "$ISIZE") to verify" >&2
got=$(head -c "$ISIZE" < <(dd if="$DEVICE" bs=1M count=$(( (ISIZE + 1048575) / 1048576 )) iflag=direct status=none) | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || die "verification FAILED: $DEVICE holds $got over the image's range, the image is $want (a bad card or reader?)"
echo "flash.sh: written and verified (SHA-256 $want). Put the card in the Pi, connect the serial cable (115200 8N1) and log in as admin."
