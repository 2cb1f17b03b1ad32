#!/usr/bin/env bash
# Installs what building and testing moat needs on a Debian machine (run as root):
# npm to bootstrap (the project then runs on the Node 24 it pins through the
# `node` package), openssl for certificates, util-linux for mount (spool-full
# tests mount a small tmpfs), strace (a test checks the order of fsync and
# rename), clamav-daemon (the scan tests run a real clamd on a tiny
# signature database of their own; no download), socat (the console tests
# drive moat-panel through a pseudo-terminal pair), and for the image tests
# dosfstools, mtools, fdisk, e2fsprogs, squashfs-tools, bmap-tools, nftables and
# device-tree-compiler.
# Then the project's own
# packages, exactly as locked.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v mount >/dev/null 2>&1 || need+=(mount)
command -v strace >/dev/null 2>&1 || need+=(strace)   # a test watches the config store's fsync order
command -v clamd >/dev/null 2>&1 || need+=(clamav-daemon)   # the scan tests start a real clamd with a small database
command -v socat >/dev/null 2>&1 || need+=(socat)     # console tests and dev.sh: a pseudo-terminal pair
command -v systemd-notify >/dev/null 2>&1 || need+=(systemd)   # the watchdog test: moatd notifies through systemd-notify
# the image tests: assemble-image.sh on a stand-in root, read back without mounting; flash.sh on loop devices
command -v mkfs.vfat >/dev/null 2>&1 || need+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need+=(mtools)
command -v sfdisk >/dev/null 2>&1 || need+=(fdisk)
command -v debugfs >/dev/null 2>&1 || need+=(e2fsprogs)
command -v mksquashfs >/dev/null 2>&1 || need+=(squashfs-tools)
command -v bmaptool >/dev/null 2>&1 || need+=(bmap-tools)
command -v nft >/dev/null 2>&1 || need+=(nftables)     # the firewall ruleset is checked with nft -c
command -v dtc >/dev/null 2>&1 || need+=(device-tree-compiler)   # the front panel's nodes, compiled into board DTBs
command -v losetup >/dev/null 2>&1 || need+=(mount)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
