#!/usr/bin/env bash
# Headless Chromium and Playwright's driver library for the web console's browser test
# (tests/console.rs runs tests/browser/console.mjs against a real dispatcher).
# * Chromium and its driver from Debian (`chromium`, `chromium-driver`) when /usr/bin/chromium
#   is missing: apt-get as root, else through sudo.
# * playwright-core (version pinned in tests/browser/package.json and package-lock.json) from
#   npm into tests/browser/node_modules (ignored by git), with browser downloads switched off:
#   the test drives the Debian Chromium (executablePath /usr/bin/chromium).
# Idempotent: re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=tests/browser
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  if ! command -v apt-get >/dev/null; then
    echo "browser: $CHROMIUM is missing and apt-get is not available;" >&2
    echo "browser: install Chromium (Debian/Ubuntu packages: chromium chromium-driver) or set CHROMIUM" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  echo "browser: installing chromium and chromium-driver with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null | head -n 1

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser: node and npm are required (Node >= 20)" >&2
  exit 1
fi
want=$(node -p "require('./$DIR/package.json').dependencies['playwright-core']")
have=""
if [ -f "$DIR/node_modules/playwright-core/package.json" ]; then
  have=$(node -p "require('./$DIR/node_modules/playwright-core/package.json').version")
fi
if [ "$have" != "$want" ]; then
  (cd "$DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "browser: playwright-core $(node -p "require('./$DIR/node_modules/playwright-core/package.json').version") in $DIR"
