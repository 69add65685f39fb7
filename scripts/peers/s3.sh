#!/usr/bin/env bash
# S3-compatible peer for the update server's object-store test (update-server/tests/s3.rs):
# moto's standalone server (`moto[server]` from PyPI) in .peers/moto/venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=5.2.5
DIR=.peers/moto
. scripts/peers/lib.sh
peer_venv "$DIR" "import moto, moto.server, flask; assert moto.__version__ == '$VERSION'" "moto[server]==$VERSION"
test -x "$DIR/venv/bin/moto_server"
"$DIR/venv/bin/python" -c "import moto; print('moto', moto.__version__, 'ready')"
