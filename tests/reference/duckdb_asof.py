"""Independent reference for the point-in-time test in tests/all/offline.rs: the same
join written in DuckDB SQL (ASOF JOIN), with ties broken explicitly first, because an
ASOF JOIN alone leaves equal timestamps unordered.

usage: duckdb_asof.py STATS.parquet PAIRS_DIR ENTITIES.parquet OUT.parquet
"""

import sys

import duckdb

stats, pairs_dir, entities, out = sys.argv[1:5]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(
    f"""
COPY (
  WITH e AS (
    SELECT *, CAST(event_timestamp AS TIMESTAMP) AS t, file_row_number AS rn
    FROM read_parquet('{entities}', file_row_number = true)
  ),
  s AS (
    SELECT user_id, CAST(ts AS TIMESTAMP) AS ts, value
    FROM read_parquet('{stats}', file_row_number = true)
    -- Equal event times: the larger created time wins (null loses), then the later row.
    QUALIFY row_number() OVER (
      PARTITION BY user_id, ts ORDER BY created DESC NULLS LAST, file_row_number DESC) = 1
  ),
  p AS (
    SELECT user_id, merchant, CAST(event_timestamp AS TIMESTAMP) AS ts, count
    FROM read_parquet('{pairs_dir}/*.parquet', filename = true, file_row_number = true)
    QUALIFY row_number() OVER (
      PARTITION BY user_id, merchant, event_timestamp
      ORDER BY filename DESC, file_row_number DESC) = 1
  )
  SELECT e.rn,
         CASE WHEN s.ts >= e.t - INTERVAL 100 SECOND THEN s.value END AS value,
         p.count AS count
  FROM e
  ASOF LEFT JOIN s ON e.user_id = s.user_id AND e.t >= s.ts
  ASOF LEFT JOIN p ON e.user_id = p.user_id AND e.merchant = p.merchant AND e.t >= p.ts
  ORDER BY e.rn
) TO '{out}' (FORMAT parquet)
"""
)
