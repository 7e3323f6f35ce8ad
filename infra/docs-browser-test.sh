#!/usr/bin/env bash
# The docs page in a real browser: headless Chromium loads /docs from a local stack
# (infra/with-gateway.sh) and the rendered page must show the API's operations. Swagger UI
# renders them with JavaScript from /docs/swagger-ui-bundle.js and /openapi.json, so a page
# whose assets do not load (the blank page of absolute https:// URLs on plain-HTTP
# `make run`) has none.
#
#   infra/docs-browser-test.sh <bin-dir>     # DOCS_SCREENSHOT=file.png also saves a screenshot
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${1:?usage: infra/docs-browser-test.sh <bin-dir>}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || bash "$root/infra/setup.sh"
[ -x "$chromium" ] || { echo "docs-browser-test: $chromium is missing (apt-get install chromium)" >&2; exit 1; }
if [ -z "${COLLECTPRO_API_URL:-}" ]; then
  exec "$root/infra/with-gateway.sh" "$bin_dir" "$0" "$bin_dir"
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
browse() { # chromium flags...: headless, no sandbox (root in CI), its own profile; a page whose
  # assets never answer must fail the test, not hang it, hence the timeout.
  timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --user-data-dir="$profile" --virtual-time-budget=15000 "$@" 2>/dev/null
}
url="$COLLECTPRO_API_URL/docs"
dom="$(browse --dump-dom "$url" || true)"
if [ -n "${DOCS_SCREENSHOT:-}" ]; then
  browse --window-size=1280,2000 --screenshot="$DOCS_SCREENSHOT" "$url" >/dev/null || true
fi

# Every documented operation is one `opblock` with its path; check a count and a few by name.
operations="$(grep -o 'class="opblock-summary-path"' <<<"$dom" | wc -l)"
expected="$(curl -fsS "$COLLECTPRO_API_URL/openapi.json" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len([m for m in v if m!="parameters"]) for v in d["paths"].values()))')"
missing=()
for text in "CollectPro API" "/accounts/{id}/payments" "/bulk/jobs/{id}/failures" "/dashboard/summary" \
  "Records a payment" "Problem"; do
  grep -qF "$text" <<<"$dom" || missing+=("$text")
done
if [ "$operations" -ne "$expected" ] || [ "${#missing[@]}" -ne 0 ]; then
  echo "docs-browser-test: FAILED: $operations of $expected operations rendered; missing: ${missing[*]:-}" >&2
  exit 1
fi
echo "docs-browser-test: $url renders all $operations operations in headless Chromium"
