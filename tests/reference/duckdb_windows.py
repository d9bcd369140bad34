"""Independent reference for the aggregate backfill test in tests/all/aggregations.rs:
the documented window rule as a DuckDB range join, and every aggregate in exact
arithmetic (fractions, integer square roots) in Python.

usage: duckdb_windows.py EVENTS.parquet ENTITIES.parquet SPEC.json OUT.json

SPEC.json: {"hop": µs, "lateness": µs, "aggregates": [[function, column|null, window µs], ...]}
OUT.json: per entity row (in file order), per aggregate: null, an int, or a float's bits.
"""

import json
import math
import struct
import sys
from fractions import Fraction as F

import duckdb

events, entities, spec_path, out = sys.argv[1:5]
spec = json.load(open(spec_path))
hop, lateness = spec["hop"], spec["lateness"]
longest = max(w for _, _, w in spec["aggregates"])

con = duckdb.connect()
rows = con.execute(
    f"""
    WITH e AS (
      SELECT file_row_number AS rn, user_id, epoch_us(event_timestamp) AS t
      FROM read_parquet('{entities}', file_row_number = true)
    ),
    v AS (
      SELECT user_id, epoch_us(event_timestamp) AS ts, epoch_us(ingested_at) AS created,
             amount, merchant
      FROM read_parquet('{events}')
    )
    SELECT e.rn, e.t, v.ts, v.created, v.amount, v.merchant
    FROM e LEFT JOIN v
      ON v.user_id = e.user_id
     AND v.ts < e.t
     AND v.created < e.t
     AND v.created - v.ts <= {lateness}
     AND v.ts >= e.t - {longest} - {hop}
    ORDER BY e.rn
    """
).fetchall()

by_row = {}
times = {}
for rn, t, ts, created, amount, merchant in rows:
    times[rn] = t
    by_row.setdefault(rn, [])
    if ts is not None:
        by_row[rn].append((ts, created, amount, merchant))


def bits(x):
    return {"f": struct.unpack("<Q", struct.pack("<d", x))[0]}


def to_float(f):
    try:
        return float(f)
    except OverflowError:
        return math.inf if f > 0 else -math.inf


def nearest_sqrt(v):
    if v == 0:
        return 0.0
    k = 120 - (v.numerator.bit_length() - v.denominator.bit_length())
    k += k % 2
    scaled = v.numerator * 2**k // v.denominator if k >= 0 else v.numerator // (v.denominator * 2**-k)
    guess = math.ldexp(float(math.isqrt(scaled)), -k // 2)
    for c in (math.nextafter(guess, 0), guess, math.nextafter(guess, math.inf)):
        lo = (F(c) + F(math.nextafter(c, 0))) / 2
        hi = (F(c) + F(math.nextafter(c, math.inf))) / 2
        if lo * lo <= v <= hi * hi:
            return c
    raise AssertionError(v)


def numeric(function, xs):
    if any(math.isnan(x) for x in xs):
        return bits(math.nan)
    if function == "sum" and not xs:
        return bits(0.0)
    if function in ("min", "max"):
        if not xs:
            return None
        # -0.0 before 0.0: order by value, then sign.
        key = lambda x: (x, math.copysign(1.0, x))
        return bits((min if function == "min" else max)(xs, key=key))
    if any(math.isinf(x) for x in xs):
        if function == "sum" and not (math.inf in xs and -math.inf in xs):
            return bits(sum(x for x in xs if math.isinf(x)))
        return bits(math.nan)
    fs = [F(x) for x in xs]
    n = len(fs)
    s = sum(fs, F(0))
    if function == "sum":
        if s == 0:
            return bits(-0.0 if all(math.copysign(1, x) < 0 for x in xs) else 0.0)
        return bits(to_float(s))
    if function == "mean":
        if n == 0:
            return None
        if s == 0:
            return bits(-0.0 if all(math.copysign(1, x) < 0 for x in xs) else 0.0)
        return bits(to_float(s / n))
    least = 2 if function in ("var_samp", "stddev_samp") else 1
    if n < least:
        return None
    mean = s / n
    ss = sum((x - mean) ** 2 for x in fs)
    v = ss / (n - 1) if least == 2 else ss / n
    if function.startswith("var"):
        return bits(to_float(v))
    return bits(nearest_sqrt(v))


def pick(function, window):
    present = [(ts, created, m) for ts, created, _, m in window if m is not None]
    if not present:
        return None
    key = lambda e: (e[0], e[1], e[2].encode())
    return (min if function == "first" else max)(present, key=key)[2]


result = []
for rn in sorted(by_row):
    t = times[rn]
    row = []
    for function, column, w in spec["aggregates"]:
        start = ((t - w) // hop) * hop
        window = [e for e in by_row[rn] if e[0] >= start]
        values = [e[2] if column == "amount" else e[3] for e in window]
        present = [x for x in values if x is not None]
        if function == "count":
            row.append(len(window) if column is None else len(present))
        elif function in ("first", "last"):
            row.append(pick(function, window))
        elif function == "approx_count_distinct":
            row.append({"distinct": len(set(present))})
        else:
            row.append(numeric(function, present))
    result.append(row)
json.dump(result, open(out, "w"))
