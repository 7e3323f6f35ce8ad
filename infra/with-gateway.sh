#!/usr/bin/env bash
# Runs a command against a local gateway started for it (the API test harnesses' stack):
#
#   infra/with-gateway.sh <bin-dir> <command> [args...]
#
# DynamoDB Local and moto come from infra/stack.sh (this script re-runs itself under it when
# the endpoint variables are not set); the gateway listens on free ports (GATEWAY_HTTP_PORT /
# GATEWAY_WS_PORT pin them), never the 3000/3001 a developer's `make run` may hold, with
# every table under a fresh prefix, and the template parameters in GATEWAY_PARAMS
# ("Name=Value Name=Value", passed as --param). The command sees COLLECTPRO_API_URL,
# COLLECTPRO_TABLE_PREFIX and COLLECTPRO_BIN_DIR; the gateway's log is $GATEWAY_LOG.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$(cd "${1:?usage: infra/with-gateway.sh <bin-dir> <command> [args...]}" && pwd)"
shift
if [ -z "${AWS_ENDPOINT_URL_DYNAMODB:-}" ]; then
  exec "$root/infra/stack.sh" "$0" "$bin_dir" "$@"
fi
cd "$root"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port="${GATEWAY_HTTP_PORT:-$(free_port)}"
ws_port="${GATEWAY_WS_PORT:-$(free_port)}"
prefix="t$(date +%s)$RANDOM-"
export GATEWAY_LOG="${GATEWAY_LOG:-$(mktemp -t gateway.XXXXXX.log)}"
params=()
for param in ${GATEWAY_PARAMS:-}; do params+=(--param "$param"); done

"$bin_dir/local-gateway" run --template template.yaml --http-port "$http_port" --ws-port "$ws_port" \
  --bin-dir "$bin_dir" --prefix "$prefix" "${params[@]}" >"$GATEWAY_LOG" 2>&1 &
gateway=$!
trap 'kill -TERM "$gateway" 2>/dev/null; wait "$gateway" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null && break
  kill -0 "$gateway" 2>/dev/null || { echo "with-gateway: the gateway exited; its log:" >&2; cat "$GATEWAY_LOG" >&2; exit 1; }
  sleep 0.1
done
echo "with-gateway: HTTP API http://127.0.0.1:$http_port (tables $prefix*, log $GATEWAY_LOG)" >&2
export COLLECTPRO_API_URL="http://127.0.0.1:$http_port"
export COLLECTPRO_TABLE_PREFIX="$prefix"
export COLLECTPRO_BIN_DIR="$bin_dir"
"$@"
