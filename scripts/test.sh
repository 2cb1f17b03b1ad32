#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what it needs, then
# type-checks, builds and runs every test (npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm test
