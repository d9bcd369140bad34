/* fraud_risk in C: the same four features as the Rust example, bit for bit. */
#include <math.h>

#include "skewless.h"

#define NEW_ACCOUNT_DAYS 30

SKEWLESS_INPUTS(
    {"amount", SKEWLESS_FLOAT64, true},
    {"txn_amount_avg_7d", SKEWLESS_FLOAT64, true},
    {"txn_amount_max_7d", SKEWLESS_FLOAT64, true},
    {"account_age_days", SKEWLESS_INT64, true},
);
SKEWLESS_OUTPUTS(
    {"amount_zscore_proxy", SKEWLESS_FLOAT64, true},
    {"amount_to_max_ratio", SKEWLESS_FLOAT64, true},
    {"is_new_account", SKEWLESS_BOOL, true},
    {"amount_log1p", SKEWLESS_FLOAT64, true},
);

enum { AMOUNT, AVG_7D, MAX_7D, AGE_DAYS };
enum { ZSCORE, RATIO, IS_NEW, LOG1P };

int skewless_transform(const skewless_input *in, skewless_output *out) {
    const double *amount = skewless_in_f64(in, AMOUNT);
    const double *avg = skewless_in_f64(in, AVG_7D);
    const double *max = skewless_in_f64(in, MAX_7D);
    const int64_t *age = skewless_in_i64(in, AGE_DAYS);
    double *zscore = skewless_out_f64(out, ZSCORE);
    double *ratio = skewless_out_f64(out, RATIO);
    double *log = skewless_out_f64(out, LOG1P);

    for (uint32_t row = 0; row < in->rows; row++) {
        bool has_amount = skewless_in_valid(in, AMOUNT, row);
        if (has_amount && skewless_in_valid(in, AVG_7D, row)) {
            /* fmax ignores a NaN average, as Rust's f64::max does. */
            zscore[row] = (amount[row] - avg[row]) / fmax(fabs(avg[row]), 1.0);
        } else {
            skewless_out_null(out, ZSCORE, row);
        }
        if (has_amount && skewless_in_valid(in, MAX_7D, row) && max[row] > 0.0) {
            ratio[row] = amount[row] / max[row];
        } else {
            skewless_out_null(out, RATIO, row);
        }
        if (skewless_in_valid(in, AGE_DAYS, row)) {
            skewless_out_bool(out, IS_NEW, row, age[row] < NEW_ACCOUNT_DAYS);
        } else {
            skewless_out_null(out, IS_NEW, row);
        }
        if (has_amount) {
            log[row] = log1p(amount[row]);
        } else {
            skewless_out_null(out, LOG1P, row);
        }
    }
    return SKEWLESS_OK;
}
