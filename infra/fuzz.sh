#!/usr/bin/env bash
# Fuzzes the whole HTTP API with schemathesis, from the API's own /openapi.json, as each
# role, against a stack started for the run: `make test` (fixed seed), `make fuzz` (random).
#
#   infra/fuzz.sh <bin-dir>                                   # FUZZ_SEED=42 by default
#   FUZZ_SEED=random FUZZ_EXAMPLES=30 infra/fuzz.sh <bin-dir>
#
# 1. infra/with-gateway.sh: DynamoDB Local, moto and the local gateway on free ports, fresh
#    tables. Every application rate limit is turned off, and API Gateway's stage and login
#    route throttles raised to 10,000/s, through the template's own parameters
#    (GATEWAY_PARAMS → --param), so a few thousand requests a minute are not answered 429
#    (the limits have their own tests).
# 2. The admin (collectpro-admin seed-admin), the demo users (a manager, a viewer, five
#    agents) and 40 accounts assigned to those agents, so reads find data.
# 3. schemathesis as viewer, agent, manager, then admin (last: its run disables users and
#    revokes sessions), each signing in through POST /auth/login itself (and again on a 401;
#    infra/schemathesis.toml), every check on, every phase (examples, coverage, fuzzing,
#    stateful with the links it infers), FUZZ_EXAMPLES (10) examples per operation. Any
#    failure of any role fails the script.
#
# JUnit reports per role and the gateway's log go to FUZZ_REPORT_DIR (default: a temp folder).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${1:?usage: infra/fuzz.sh <bin-dir>}"
export COLLECTPRO_ADMIN_PASSWORD="${COLLECTPRO_ADMIN_PASSWORD:-collectpro-local-admin}"
if [ -z "${COLLECTPRO_API_URL:-}" ]; then
  GATEWAY_PARAMS="LoginLimitPerIp=off LoginLimitPerEmail=off RegisterLimitPerIp=off RegisterLimitPerEmail=off WriteLimitPerUser=off ApiRateLimit=10000 ApiBurstLimit=10000 LoginRouteRateLimit=10000 LoginRouteBurstLimit=10000" \
    exec "$root/infra/with-gateway.sh" "$bin_dir" "$0" "$bin_dir"
fi
cd "$root"

seed="${FUZZ_SEED:-42}"
[ "$seed" = random ] && seed="$(python3 -c 'import random; print(random.randrange(2**31))')"
examples="${FUZZ_EXAMPLES:-10}"
roles="${FUZZ_ROLES:-viewer agent manager admin}"
schemathesis="$root/.local/venv/bin/schemathesis"
[ -x "$schemathesis" ] || bash "$root/infra/setup.sh"
reports="${FUZZ_REPORT_DIR:-$(mktemp -d)}"
mkdir -p "$reports"
prefix="$COLLECTPRO_TABLE_PREFIX"

"$bin_dir/collectpro-admin" seed-admin --table-prefix "$prefix" --wait-secs 30 >/dev/null
agents="$("$bin_dir/collectpro-admin" seed-demo-users --table-prefix "$prefix" 2>/dev/null)"
"$bin_dir/seed" -n 40 --table-prefix "$prefix" --agents "$(paste -sd, - <<<"$agents")" >/dev/null

export FUZZ_PROTECTED_EMAILS="admin@collectpro.local,manager@collectpro.local,viewer@collectpro.local,agent1@collectpro.local"
echo "fuzz: seed $seed, $examples examples per operation, roles: $roles; reports in $reports"
failed=()
started=$SECONDS
for role in $roles; do
  case "$role" in
    agent) email=agent1@collectpro.local ;;
    *) email="$role@collectpro.local" ;;
  esac
  echo "fuzz: ---------------- as $role ($email)"
  FUZZ_EMAIL="$email" FUZZ_PASSWORD="$COLLECTPRO_ADMIN_PASSWORD" \
    PYTHONPATH="$root/infra" SCHEMATHESIS_HOOKS=fuzz_hooks \
    "$schemathesis" --config-file "$root/infra/schemathesis.toml" run "$COLLECTPRO_API_URL/openapi.json" \
    --url "$COLLECTPRO_API_URL" --checks all --exclude-checks unsupported_method --seed "$seed" --max-examples "$examples" \
    --report junit --report-junit-path "$reports/$role.xml" || failed+=("$role")
done
cp "$GATEWAY_LOG" "$reports/gateway.log" 2>/dev/null || true
echo "fuzz: $((SECONDS - started)) s, seed $seed; failures as: ${failed[*]:-none}; reports in $reports"
[ "${#failed[@]}" -eq 0 ]
