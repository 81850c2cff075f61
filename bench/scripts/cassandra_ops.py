"""Cassandra's own CPU per operation, for each kind of request essync sends during a backfill.

    .work/tools/cqlsh/bin/python bench/scripts/cassandra_ops.py [N]

Runs N operations of each kind (default 20,000) against the local Cassandra (127.0.0.1:9042,
started by `scripts/servers up`) in a keyspace of its own, dropped at the end, and prints the
CPU time the Cassandra process spent per operation (from /proc, user + system) beside the wall
time. The statements are essync's: rows of the synced table (with its SAI time index, and
without), the ledger's intents and records, reads by `IN` lists of 50 (ids present and
absent), the write-time read-back, and a scan in pages of 1,000. Run it under `taskset` and
`taskset -a -p` to see what sharing the cores costs the server (see docs/benchmarks.md).
"""

import os
import subprocess
import sys
import time
import uuid

from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
from cassandra.query import BatchStatement, BatchType

KEYSPACE = "essync_ops_bench"
CONTENT = "x" * 1000


def cassandra_pid():
    out = subprocess.check_output(["pgrep", "-f", "CassandraDaemon"]).split()
    return int(out[0])


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    pid = cassandra_pid()
    cluster = Cluster(["127.0.0.1"], port=9042)
    s = cluster.connect()
    s.default_timeout = 60
    s.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    s.set_keyspace(KEYSPACE)
    for table in ["rows_indexed", "rows_plain"]:
        s.execute(f"DROP TABLE IF EXISTS {table}")
        s.execute(
            f"CREATE TABLE {table} (id uuid PRIMARY KEY, index_ text, type text, "
            "timestamp timestamp, content text)"
        )
    s.execute("CREATE INDEX IF NOT EXISTS rows_indexed_ts ON rows_indexed (timestamp) USING 'sai'")
    s.execute("DROP TABLE IF EXISTS ledger")
    s.execute(
        "CREATE TABLE ledger (id uuid PRIMARY KEY, digest blob, index_ text, type text, "
        "timestamp timestamp, es_seq_no bigint, es_primary_term bigint, "
        "cassandra_written_at bigint, pending blob, seen_es blob, seen_cassandra blob, base blob)"
    )
    time.sleep(2)

    ids = [uuid.uuid4() for _ in range(n)]
    absent = [uuid.uuid4() for _ in range(n)]
    now_ms = int(time.time() * 1000)
    now_us = int(time.time() * 1e6)
    digest = os.urandom(32)

    def measure(name, run):
        c0, t0 = cpu_seconds(pid), time.time()
        run()
        c1, t1 = cpu_seconds(pid), time.time()
        print(f"{name:44s} {(c1 - c0) / n * 1e6:8.1f} µs of Cassandra CPU per operation, "
              f"{t1 - t0:6.2f} s", flush=True)

    def batched(statement, values, per=10, in_flight=16):
        batches = []
        for at in range(0, len(values), per):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for v in values[at:at + per]:
                batch.add(statement, v)
            batches.append((batch, ()))
        execute_concurrent(s, batches, concurrency=in_flight, raise_on_first_error=True)

    def by_ids(statement, id_list, per=50, in_flight=16):
        lists = [(id_list[at:at + per],) for at in range(0, len(id_list), per)]
        execute_concurrent_with_args(s, statement, lists, concurrency=in_flight,
                                     raise_on_first_error=True)

    insert = "INSERT INTO {} (id, index_, type, timestamp, content) VALUES (?, ?, ?, ?, ?) " \
             "USING TTL 0 AND TIMESTAMP ?"
    indexed = s.prepare(insert.format("rows_indexed"))
    plain = s.prepare(insert.format("rows_plain"))
    row = lambda i: (i, "index", "_doc", now_ms, CONTENT, now_us)
    measure("row write, time index, batches of 10", lambda: batched(indexed, [row(i) for i in ids]))
    measure("row write, no index, batches of 10", lambda: batched(plain, [row(i) for i in ids]))
    measure("row write, no index, one per request",
            lambda: execute_concurrent_with_args(s, plain, [row(i) for i in absent],
                                                 concurrency=32))
    s.execute("TRUNCATE rows_plain")
    intent = s.prepare("UPDATE ledger SET pending = ?, seen_es = ?, seen_cassandra = ? WHERE id = ?")
    measure("ledger intent, batches of 10",
            lambda: batched(intent, [(digest, digest, None, i) for i in ids]))
    record = s.prepare(
        "INSERT INTO ledger (id, digest, index_, type, timestamp, es_seq_no, es_primary_term, "
        "cassandra_written_at, pending, seen_es, seen_cassandra) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
    measure("ledger record, batches of 10",
            lambda: batched(record, [(i, digest, "index", "_doc", now_ms, 5, 1, now_us, None, None,
                                      None) for i in ids]))
    ledger_read = s.prepare(
        "SELECT id, digest, index_, type, timestamp, es_seq_no, es_primary_term, "
        "cassandra_written_at, pending, seen_es, seen_cassandra FROM ledger WHERE id IN ?")
    measure("ledger read, IN 50, absent", lambda: by_ids(ledger_read, absent))
    measure("ledger read, IN 50, present", lambda: by_ids(ledger_read, ids))
    row_read = s.prepare(
        "SELECT id, index_, type, timestamp, content, writetime(content) FROM rows_indexed "
        "WHERE id IN ?")
    measure("row read, IN 50, absent", lambda: by_ids(row_read, absent))
    measure("row read, IN 50, present", lambda: by_ids(row_read, ids))
    read_back = s.prepare(
        "SELECT id, writetime(index_), writetime(type), writetime(timestamp), "
        "writetime(content) FROM rows_indexed WHERE id IN ?")
    measure("write-time read-back, IN 50", lambda: by_ids(read_back, ids))

    def scan():
        statement = s.prepare(
            "SELECT token(id), id, index_, type, timestamp, content, writetime(content) "
            "FROM rows_indexed")
        statement.fetch_size = 1000
        for _ in s.execute(statement):
            pass

    measure("scan, pages of 1,000 (per row)", scan)
    s.execute(f"DROP KEYSPACE {KEYSPACE}")
    cluster.shutdown()


if __name__ == "__main__":
    main()
