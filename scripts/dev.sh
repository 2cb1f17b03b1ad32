#!/usr/bin/env bash
# A development gateway on localhost (see README): installs what it needs, builds,
# and runs moatd on 127.0.0.1:2525 with a stand-in internal server on :2222, and
# moat-panel's serial console on a socat pseudo-terminal (it prints how to attach:
# screen .dev/tty 115200).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run dev
