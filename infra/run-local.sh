#!/usr/bin/env bash
# `make run`'s foreground process, started by infra/stack.sh (DynamoDB Local and moto are up
# and the SDK endpoint variables point at them):
#   1. the local gateway (provisions every table and queue of template.yaml, serves the APIs);
#   2. once it answers, the first admin and the token key set (collectpro-admin seed-admin);
#   3. with DEMO=1, demo users (a manager, a viewer, five agents; the admin's password) and
#      a few hundred demo accounts assigned to those agents.
# Ctrl-C (or TERM) stops the gateway, which stops every function process.
set -euo pipefail
bin_dir="$1"; http_port="$2"; ws_port="$3"
prefix="collectpro-local-"

"$bin_dir/local-gateway" run --template template.yaml --http-port "$http_port" \
  --ws-port "$ws_port" --bin-dir "$bin_dir" --prefix "$prefix" &
gateway=$!
trap 'kill -TERM "$gateway" 2>/dev/null; wait "$gateway" 2>/dev/null' EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null && break
  kill -0 "$gateway" 2>/dev/null || { echo "run: the gateway exited" >&2; exit 1; }
  sleep 0.1
done

"$bin_dir/collectpro-admin" seed-admin --table-prefix "$prefix" --wait-secs 30
echo "run: admin admin@collectpro.local, password from COLLECTPRO_ADMIN_PASSWORD" \
  "(local default: $COLLECTPRO_ADMIN_PASSWORD)"
if [ "${DEMO:-0}" = "1" ]; then
  # seed-demo-users prints the agents' ids, one per line; seed takes them comma-separated.
  if agent_ids="$("$bin_dir/collectpro-admin" seed-demo-users --table-prefix "$prefix")" \
    && [ -n "$agent_ids" ]; then
    echo "run: demo sign-ins (same password as the admin): manager@collectpro.local," \
      "viewer@collectpro.local, agent1@collectpro.local ... agent5@collectpro.local"
    "$bin_dir/seed" --demo --table-prefix "$prefix" --agents "$(paste -sd, - <<<"$agent_ids")" \
      || echo "run: demo accounts failed (above); the stack keeps running without them" >&2
  else
    echo "run: demo users failed (above); the stack keeps running without the demo" >&2
  fi
fi
echo "run: ready. HTTP API http://localhost:$http_port  WebSocket ws://localhost:$ws_port" \
  " docs http://localhost:$http_port/docs  (Ctrl-C stops everything)"
wait "$gateway"
