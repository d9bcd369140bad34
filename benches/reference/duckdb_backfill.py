"""The backfill benchmark's DuckDB side: the same point-in-time join (ASOF JOIN, 7-day
TTL) and the same arithmetic as the fraud_risk transform, over the same Parquet files,
written to Parquet in entity-frame order. Prints the wall time and this process's peak
RSS (Python's own ~20 MB included).

usage: duckdb_backfill.py ENTITIES.parquet FEATURES.parquet OUT.parquet THREADS
"""

import sys
import time

import duckdb

entities, features, out, threads = sys.argv[1:5]
started = time.perf_counter()
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f"SET threads = {int(threads)}")
con.execute(
    f"""
COPY (
  WITH e AS (
    SELECT *, file_row_number AS rn FROM read_parquet('{entities}', file_row_number = true)
  ),
  s AS (
    SELECT user_id, event_timestamp AS ts, txn_amount_avg_7d, txn_amount_max_7d,
           account_age_days, f4, f5, f6
    FROM read_parquet('{features}')
  ),
  j AS (
    SELECT e.rn, e.user_id, e.event_timestamp, e.amount,
           s.ts >= e.event_timestamp - INTERVAL 7 DAY AS fresh,
           s.txn_amount_avg_7d, s.txn_amount_max_7d, s.account_age_days, s.f4, s.f5, s.f6
    FROM e ASOF LEFT JOIN s ON e.user_id = s.user_id AND e.event_timestamp >= s.ts
  ),
  v AS (
    SELECT rn, user_id, event_timestamp, amount,
           CASE WHEN fresh THEN txn_amount_avg_7d END AS avg,
           CASE WHEN fresh THEN txn_amount_max_7d END AS max,
           CASE WHEN fresh THEN account_age_days END AS age,
           CASE WHEN fresh THEN f4 END AS f4,
           CASE WHEN fresh THEN f5 END AS f5,
           CASE WHEN fresh THEN f6 END AS f6
    FROM j
  )
  SELECT user_id, event_timestamp, amount,
         avg AS "user_stats:txn_amount_avg_7d", max AS "user_stats:txn_amount_max_7d",
         age AS "user_stats:account_age_days", f4 AS "user_stats:f4",
         f5 AS "user_stats:f5", f6 AS "user_stats:f6",
         (amount - avg) / greatest(abs(avg), 1.0) AS "txn_risk:amount_zscore_proxy",
         CASE WHEN max > 0 THEN amount / max END AS "txn_risk:amount_to_max_ratio",
         age < 30 AS "txn_risk:is_new_account",
         ln(1 + amount) AS "txn_risk:amount_log1p"
  FROM v
  ORDER BY rn
) TO '{out}' (FORMAT parquet)
"""
)
elapsed = time.perf_counter() - started
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(f"elapsed_s={elapsed:.3f} peak_rss_kb={hwm}")
