#!/usr/bin/env bash
# Installs the third-party peers the interop tests talk to (aiocoap, an OAuth server, ...)
# from the package registries into .peers/ (ignored by git). Idempotent; safe to re-run.
# Each part of the system adds one script under scripts/peers/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .peers
shopt -s nullglob
for s in scripts/peers/*.sh; do
  echo "--- $s"
  bash "$s"
done
