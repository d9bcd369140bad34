"""fraud_risk in Python: the same four features as the Rust example, bit for bit."""

from skewless import BOOL, FLOAT64, INT64, transform
from skewless.ieee import fmax, log1p

NEW_ACCOUNT_DAYS = 30


@transform(
    inputs={
        "amount": FLOAT64,
        "txn_amount_avg_7d": FLOAT64,
        "txn_amount_max_7d": FLOAT64,
        "account_age_days": INT64,
    },
    outputs={
        "amount_zscore_proxy": FLOAT64,
        "amount_to_max_ratio": FLOAT64,
        "is_new_account": BOOL,
        "amount_log1p": FLOAT64,
    },
)
def fraud_risk(amount, avg_7d, max_7d, age_days):
    zscore, ratio, is_new, log = [], [], [], []
    for a, avg, mx, age in zip(amount, avg_7d, max_7d, age_days):
        zscore.append(None if a is None or avg is None else (a - avg) / fmax(abs(avg), 1.0))
        ratio.append(a / mx if a is not None and mx is not None and mx > 0.0 else None)
        is_new.append(None if age is None else age < NEW_ACCOUNT_DAYS)
        log.append(None if a is None else log1p(a))
    return zscore, ratio, is_new, log
