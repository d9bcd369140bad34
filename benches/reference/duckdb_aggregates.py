"""The aggregate backfill benchmark's DuckDB side: the same windows (hop-aligned tail,
head excluding t, arrival before t, at most 1 h late) as a range join with filtered
aggregates, over the same Parquet files, written to Parquet in entity-frame order.
Prints the wall time and this process's peak RSS.

usage: duckdb_aggregates.py EVENTS.parquet ENTITIES.parquet OUT.parquet THREADS
"""

import sys
import time

import duckdb

events, entities, out, threads = sys.argv[1:5]
started = time.perf_counter()
con = duckdb.connect()
con.execute(f"SET threads = {int(threads)}")
HOP = 300_000_000
H = 3_600_000_000
D = 24 * H


def start(window):
    # floor((t - W) / hop) * hop; t and W positive here, so integer division floors.
    return f"((e.t - {window}) // {HOP}) * {HOP}"


con.execute(
    f"""
COPY (
  WITH e AS (
    SELECT file_row_number AS rn, user_id, epoch_us(event_timestamp) AS t
    FROM read_parquet('{entities}', file_row_number = true)
  ),
  v AS (
    SELECT user_id, epoch_us(event_timestamp) AS ts, epoch_us(ingested_at) AS c, amount, merchant
    FROM read_parquet('{events}')
  )
  SELECT e.rn,
    count(v.ts) FILTER (WHERE v.ts >= {start(H)}) AS txn_count_1h,
    coalesce(sum(v.amount) FILTER (WHERE v.ts >= {start(D)}), 0) AS amount_sum_24h,
    avg(v.amount) FILTER (WHERE v.ts >= {start(7 * D)}) AS amount_mean_7d,
    max(v.amount) FILTER (WHERE v.ts >= {start(7 * D)}) AS amount_max_7d,
    stddev_samp(v.amount) FILTER (WHERE v.ts >= {start(7 * D)}) AS amount_stddev_7d,
    arg_max(v.merchant, v.ts) FILTER (WHERE v.ts >= {start(30 * D)}) AS last_merchant,
    approx_count_distinct(v.merchant) FILTER (WHERE v.ts >= {start(30 * D)}) AS merchants_30d
  FROM e LEFT JOIN v
    ON v.user_id = e.user_id AND v.ts < e.t AND v.c < e.t AND v.c - v.ts <= {H}
   AND v.ts >= {start(30 * D)}
  GROUP BY e.rn
  ORDER BY e.rn
) TO '{out}' (FORMAT parquet)
"""
)
elapsed = time.perf_counter() - started
with open("/proc/self/status") as status:
    rss = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
print(f"elapsed_s={elapsed:.3f} peak_rss_kb={rss}")
