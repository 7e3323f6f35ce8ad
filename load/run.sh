#!/usr/bin/env bash
# `make load`: the load test against a `make run` stack on its own ports. If nothing answers
# on LOAD_HTTP_PORT, the stack is started here (DynamoDB Local, moto, the gateway with the
# functions of $COLLECTPRO_BIN_DIR; no web app) with its log in $LOAD_OUT/stack.log, and stopped
# (its whole process group) when the run ends, however it ends. A stack already up must have
# been started with its output in LOAD_STACK_LOG, which the load reads.
#
# Rate limits are raised for the run through the template parameters (GATEWAY_PARAMS): the
# load signs many users in from one address. Loopback only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin_dir="${COLLECTPRO_BIN_DIR:?set it to the stack binaries folder (make load does)}"
http_port="${LOAD_HTTP_PORT:-3400}"; ws_port="${LOAD_WS_PORT:-3401}"
ddb_port="${LOAD_DYNAMODB_PORT:-8400}"; sqs_port="${LOAD_SQS_PORT:-9440}"
out="${LOAD_OUT:-$root/target/load}"
mkdir -p "$out"
export LOAD_OUT="$out" LOAD_BASE="http://127.0.0.1:$http_port" LOAD_WS="ws://127.0.0.1:$ws_port"
export DYNAMODB_PORT="$ddb_port" SQS_PORT="$sqs_port" COLLECTPRO_BIN_DIR="$bin_dir"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port" AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_EC2_METADATA_DISABLED=true
limits="LoginLimitPerIp=100000/60 LoginLimitPerEmail=1000/60 RegisterLimitPerIp=1000/60"
limits+=" WriteLimitPerUser=100000/60 ApiRateLimit=10000 ApiBurstLimit=10000"
limits+=" LoginRouteRateLimit=2000 LoginRouteBurstLimit=2000"

up() { (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; }
stack=""
if up; then
  : "${LOAD_STACK_LOG:?a stack already answers on $http_port: set LOAD_STACK_LOG to its log file}"
  echo "load: using the stack on $LOAD_BASE (log $LOAD_STACK_LOG)"
else
  export LOAD_STACK_LOG="$out/stack.log"
  echo "load: starting the stack (HTTP $http_port, WebSocket $ws_port, DynamoDB Local $ddb_port, SQS $sqs_port; log $LOAD_STACK_LOG)"
  GATEWAY_PARAMS="$limits ${GATEWAY_PARAMS:-}" WEB=0 DEMO=0 \
    setsid infra/stack.sh infra/run-local.sh "$bin_dir" "$http_port" "$ws_port" >"$LOAD_STACK_LOG" 2>&1 &
  stack=$!
  trap 'kill -TERM -- -"$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true' EXIT
  trap 'exit 130' INT TERM
  for _ in $(seq 1 1200); do
    grep -q "run: ready" "$LOAD_STACK_LOG" && break
    kill -0 "$stack" 2>/dev/null || { echo "load: the stack exited; its log:" >&2; tail -30 "$LOAD_STACK_LOG" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "run: ready" "$LOAD_STACK_LOG" || { echo "load: the stack did not start in 120 s" >&2; exit 1; }
fi
"$bin_dir/load"
