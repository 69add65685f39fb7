#!/usr/bin/env bash
# Installs aiocoap 0.4.17 (with its OSCORE extra) into .peers/aiocoap/venv and unpacks its
# source distribution into .peers/aiocoap/src (for contrib/oscore-plugtest). Used by the
# oscore crate's interop tests and bench/oscore.sh. Idempotent: re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=0.4.17
DIR=.peers/aiocoap
. scripts/peers/lib.sh
peer_venv "$DIR" \
  "import aiocoap, aiocoap.meta, aiocoap.oscore, cbor2, cryptography, filelock; assert aiocoap.meta.version == '$VERSION'" \
  "aiocoap[oscore]==$VERSION"

if [ ! -d "$DIR/src/aiocoap-$VERSION/contrib/oscore-plugtest" ]; then
  rm -rf "$DIR/sdist" "$DIR/src"
  mkdir -p "$DIR/sdist" "$DIR/src"
  "$DIR/venv/bin/python" -m pip download --quiet --disable-pip-version-check \
    --no-binary :all: --no-deps --dest "$DIR/sdist" "aiocoap==$VERSION"
  tar -xzf "$DIR"/sdist/aiocoap-"$VERSION".tar.gz -C "$DIR/src"
fi
test -d "$DIR/src/aiocoap-$VERSION/contrib/oscore-plugtest"
"$DIR/venv/bin/python" -c "import aiocoap, aiocoap.meta, aiocoap.oscore; print('aiocoap', aiocoap.meta.version, 'ready')"
