#!/usr/bin/env bash
# Runs a command with the local AWS stand-ins up: DynamoDB Local (AWS's jar from the npm
# package) and moto_server (SQS, SSM, S3). Both start on free ports (or DYNAMODB_PORT / SQS_PORT),
# the SDK's standard endpoint variables point at them, and both stop when the command ends,
# however it ends.
#
#   infra/stack.sh cargo nextest run        # tests against a fresh stack (its data on a RAM disk)
#   DYNAMODB_PORT=8000 SQS_PORT=9324 infra/stack.sh <gateway>   # make run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="$root/.local"
[ -f "$local_dir/dynamodb/DynamoDBLocal.jar" ] && [ -x "$local_dir/venv/bin/moto_server" ] \
  || bash "$root/infra/setup.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ddb_port="${DYNAMODB_PORT:-$(free_port)}"
sqs_port="${SQS_PORT:-$(free_port)}"
logs="${STACK_LOG_DIR:-$(mktemp -d)}"
mkdir -p "$logs"

# DynamoDB Local's database is a file, not -inMemory: infra/dynamodb-local-index.py adds the
# indexes its stream queries lack (see there), which needs a file another process can open.
# Without PERSIST (DYNAMODB_DATA_DIR) the file is a fresh one on the RAM disk when there is
# one (as fast as -inMemory), removed when the command ends.
if [ -n "${DYNAMODB_DATA_DIR:-}" ]; then
  ddb_dir="$DYNAMODB_DATA_DIR"; mkdir -p "$ddb_dir"; ddb_scratch=
else
  ddb_dir="$(mktemp -d -p "$( [ -w /dev/shm ] && echo /dev/shm || echo "$logs")" dynamodb.XXXXXX)"; ddb_scratch="$ddb_dir"
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -z "$ddb_scratch" ] || rm -rf "$ddb_scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# From the log folder: DynamoDB Local writes a metadata file into its working directory.
(cd "$logs" && exec java -Xmx1g -Djava.library.path="$local_dir/dynamodb/DynamoDBLocal_lib" \
  -jar "$local_dir/dynamodb/DynamoDBLocal.jar" -sharedDb -dbPath "$ddb_dir" -port "$ddb_port") \
  >"$logs/dynamodb.log" 2>&1 &
pids+=($!)
"$local_dir/venv/bin/moto_server" -H 127.0.0.1 -p "$sqs_port" >"$logs/moto.log" 2>&1 &
pids+=($!)

wait_for() { # name port: until it accepts TCP connections (30 s at most)
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "stack: $1 did not start; its log:" >&2; cat "$logs/$1.log" >&2; exit 1
}
wait_for dynamodb "$ddb_port"
wait_for moto "$sqs_port"
python3 "$root/infra/dynamodb-local-index.py" "http://127.0.0.1:$ddb_port" "$ddb_dir/shared-local-instance.db"

export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port"
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$ddb_port"
export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$sqs_port"
export AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$sqs_port" # moto_server also speaks SSM (the JWT key set)
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$sqs_port" # ... and S3 (placement files, issue 18)
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_EC2_METADATA_DISABLED=true
echo "stack: DynamoDB Local on $AWS_ENDPOINT_URL_DYNAMODB, SQS (moto) on $AWS_ENDPOINT_URL_SQS, logs in $logs" >&2
"$@"
