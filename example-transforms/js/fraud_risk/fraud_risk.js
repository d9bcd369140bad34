// fraud_risk in JavaScript: the same four features as the Rust example, bit for bit,
// except that amount_log1p uses SpiderMonkey's Math.log1p, which differs from Rust's
// (wasi-libc's) log1p by at most 1 ulp on rare inputs (docs/languages.md).
import { BOOL, FLOAT64, INT64, transform } from "./skewless.js";

const NEW_ACCOUNT_DAYS = 30n;

// C's fmax and Rust's f64::max: a NaN operand is ignored (Math.max would return NaN).
const fmax = (a, b) => (Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.max(a, b));

export const transformer = transform(
  {
    name: "fraud_risk",
    inputs: {
      amount: FLOAT64,
      txn_amount_avg_7d: FLOAT64,
      txn_amount_max_7d: FLOAT64,
      account_age_days: INT64,
    },
    outputs: {
      amount_zscore_proxy: FLOAT64,
      amount_to_max_ratio: FLOAT64,
      is_new_account: BOOL,
      amount_log1p: FLOAT64,
    },
  },
  (amount, avg, max, age) => {
    const rows = amount.length;
    const zscore = new Array(rows);
    const ratio = new Array(rows);
    const isNew = new Array(rows);
    const log = new Array(rows);
    for (let i = 0; i < rows; i++) {
      const a = amount[i];
      zscore[i] = a === null || avg[i] === null ? null : (a - avg[i]) / fmax(Math.abs(avg[i]), 1);
      ratio[i] = a !== null && max[i] !== null && max[i] > 0 ? a / max[i] : null;
      isNew[i] = age[i] === null ? null : age[i] < NEW_ACCOUNT_DAYS;
      log[i] = a === null ? null : Math.log1p(a);
    }
    return [zscore, ratio, isNew, log];
  },
);
