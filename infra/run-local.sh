#!/usr/bin/env bash
# `make run`'s foreground process, started by infra/stack.sh (DynamoDB Local and moto are up
# and the SDK endpoint variables point at them):
#   1. the local gateway (provisions every table and queue of template.yaml, serves the APIs);
#   2. once it answers, the first admin and the token key set (collectpro-admin seed-admin);
#   3. with DEMO=1, demo users (a manager, a viewer, five agents; the admin's password) and
#      a few hundred demo accounts assigned to those agents;
#   4. the web app (web/), built for these ports (VITE_API_URL / VITE_WS_URL) and served by
#      `vite preview` on http://localhost:$WEB_PORT (default 5173; WEB=0 skips it).
# GATEWAY_PARAMS="Name=Value ..." overrides template parameters (e.g. AllowedOrigins).
# Ctrl-C (or TERM) stops the gateway, which stops every function process, and the preview.
set -euo pipefail
bin_dir="$1"; http_port="$2"; ws_port="$3"
prefix="collectpro-local-"
web_port="${WEB_PORT:-5173}"
params=()
for p in ${GATEWAY_PARAMS:-}; do params+=(--param "$p"); done
# The template's AllowedOrigins names the default web port; another one must be allowed too.
if [ "$web_port" != 5173 ] && [[ " ${GATEWAY_PARAMS:-} " != *" AllowedOrigins="* ]]; then
  params+=(--param "AllowedOrigins=http://localhost:$web_port,http://127.0.0.1:$web_port")
fi

"$bin_dir/local-gateway" run --template template.yaml --http-port "$http_port" \
  --ws-port "$ws_port" --bin-dir "$bin_dir" --prefix "$prefix" ${params[@]+"${params[@]}"} &
gateway=$!
web=""
trap 'kill -TERM "$gateway" $web 2>/dev/null; wait "$gateway" $web 2>/dev/null' EXIT
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
if [ "${WEB:-1}" = "1" ] && [ -d web/node_modules ]; then
  (cd web && VITE_API_URL="http://localhost:$http_port" VITE_WS_URL="ws://localhost:$ws_port" \
    npm run --silent build:app) || { echo "run: the web app did not build (above)" >&2; exit 1; }
  (cd web && exec node node_modules/vite/bin/vite.js preview --host localhost --port "$web_port" \
    --strictPort) >/dev/null &
  web=$!
  echo "run: web app http://localhost:$web_port (vite preview of web/dist)"
fi
echo "run: ready. HTTP API http://localhost:$http_port  WebSocket ws://localhost:$ws_port" \
  " docs http://localhost:$http_port/docs  (Ctrl-C stops everything)"
wait "$gateway"
