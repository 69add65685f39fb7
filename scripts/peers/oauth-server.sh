#!/usr/bin/env bash
# Third-party OAuth 2.0 authorization server for the key-repo external-issuer test
# (key-repo/tests/external_issuer.rs): panva's `oidc-provider` from npm, configured by
# key-repo/tests/oidc/launcher.mjs for the client-credentials grant with ES256 JWT access
# tokens (RFC 9068). Installs into .peers/oidc-provider/. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="9.13.3"
DEST=.peers/oidc-provider
mkdir -p "$DEST"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "oauth-server: node and npm are required (Node >= 20)" >&2
  exit 1
fi
installed=""
if [ -f "$DEST/node_modules/oidc-provider/package.json" ]; then
  installed=$(node -p "require('./$DEST/node_modules/oidc-provider/package.json').version")
fi
if [ "$installed" != "$VERSION" ]; then
  [ -f "$DEST/package.json" ] || echo '{"name":"key-repo-oidc-peer","private":true,"type":"module"}' > "$DEST/package.json"
  npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error "oidc-provider@$VERSION"
fi
# The launcher is versioned with the test; copy it next to node_modules so that
# `import 'oidc-provider'` resolves.
cp key-repo/tests/oidc/launcher.mjs "$DEST/launcher.mjs"
echo "oauth-server: oidc-provider $(node -p "require('./$DEST/node_modules/oidc-provider/package.json').version") in $DEST"
