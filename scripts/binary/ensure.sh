#!/bin/sh
# Builds the single binaries (npm run build:binary → dist/bin/) when they are missing or older than the
# sources they are made of; otherwise does nothing. Used by scripts/up.sh and test/run.sh.
set -eu
cd "$(dirname "$0")/../.."
sums=dist/bin/SHA256SUMS
if [ -f "$sums" ] && [ -z "$(find src server agent scripts package-lock.json install.sh -newer "$sums" -print 2>/dev/null | head -n 1)" ]; then
  exit 0
fi
echo "building the single binaries (npm run build:binary)" >&2
npm run -s build:binary >/dev/null
