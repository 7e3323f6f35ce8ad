#!/usr/bin/env python3
"""Gives DynamoDB Local's stream records the two indexes its own queries need.

    infra/dynamodb-local-index.py <endpoint> <database file>

DynamoDB Local (the jar from the npm package) keeps the records of every table's stream in
one SQLite table, `us`, whose only key is the sequence number. Its stream queries ask by
shard and by stream: the newest record of a shard (`WHERE ShardID=? ORDER BY SequenceNumber
DESC LIMIT 1`, on every GetRecords) and the oldest of a stream (`MIN(SequenceNumber) WHERE
StreamID=?`, on every DescribeStream and GetRecords). Without an index each of them walks
the records of all streams; the local gateway's stream mappings poll each shard four times a
second, as Lambda does, so as records pile up (a 100,000-row import writes 200,000; a test
run's many stacks share one DynamoDB Local) the polls alone keep DynamoDB Local's one SQLite
thread busy, and every call waits behind them. Measured on the 2-core machine, 10 idle
pollers, writing 10,000 stream records at a time: 10.0, 12.0, 36.6 s for the first three
batches without the indexes; 10.7, 8.3, 7.4, 7.7, 6.3, 6.8 s for six with them.

The indexes change how SQLite finds rows, not which rows: DynamoDB Local answers exactly as
before. SQLite re-prepares DynamoDB Local's statements when the schema changes, so they can
be added while it runs. DynamoDB Local creates its schema on its first request, so this
script makes one (ListTables) first. It needs the database in a file (`-dbPath`), not
`-inMemory`; `infra/stack.sh` puts the file on a RAM disk when there is one.
"""

import sqlite3
import sys
import urllib.request

INDEXES = (
    "CREATE INDEX IF NOT EXISTS collectpro_us_shard ON us(ShardID, SequenceNumber)",
    "CREATE INDEX IF NOT EXISTS collectpro_us_stream ON us(StreamID, SequenceNumber)",
)


def main(endpoint: str, database: str) -> None:
    request = urllib.request.Request(
        endpoint,
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            # DynamoDB Local reads the access key and region from the header; it checks no
            # signature.
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    # mode=rw: never create a database DynamoDB Local does not use.
    db = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=30)
    try:
        for statement in INDEXES:
            db.execute(statement)
        db.commit()
    finally:
        db.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: infra/dynamodb-local-index.py <endpoint> <database file>")
    main(sys.argv[1], sys.argv[2])
