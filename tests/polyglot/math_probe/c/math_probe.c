/* The math probe in C: wasi-libc's libm (see tests/guests/math-probe). */
#include <math.h>

#include "skewless.h"

SKEWLESS_INPUTS({"x", SKEWLESS_FLOAT64, true}, {"y", SKEWLESS_FLOAT64, true});
SKEWLESS_OUTPUTS(
    {"sqrt", SKEWLESS_FLOAT64, true}, {"exp", SKEWLESS_FLOAT64, true},
    {"expm1", SKEWLESS_FLOAT64, true}, {"log", SKEWLESS_FLOAT64, true},
    {"log1p", SKEWLESS_FLOAT64, true}, {"log10", SKEWLESS_FLOAT64, true},
    {"sin", SKEWLESS_FLOAT64, true}, {"cos", SKEWLESS_FLOAT64, true},
    {"tan", SKEWLESS_FLOAT64, true}, {"atan", SKEWLESS_FLOAT64, true},
    {"tanh", SKEWLESS_FLOAT64, true}, {"cbrt", SKEWLESS_FLOAT64, true},
    {"pow", SKEWLESS_FLOAT64, true}, {"atan2", SKEWLESS_FLOAT64, true},
);

static double (*const UNARY[])(double) = {sqrt, exp, expm1, log, log1p, log10,
                                          sin,  cos, tan,   atan, tanh, cbrt};
enum { N_UNARY = sizeof UNARY / sizeof UNARY[0] };

int skewless_transform(const skewless_input *in, skewless_output *out) {
    const double *x = skewless_in_f64(in, 0);
    const double *y = skewless_in_f64(in, 1);
    for (size_t f = 0; f < N_UNARY + 2; f++) {
        double *o = skewless_out_f64(out, f);
        for (uint32_t row = 0; row < in->rows; row++) {
            bool has_x = skewless_in_valid(in, 0, row);
            bool has_y = skewless_in_valid(in, 1, row);
            if (!has_x || (f >= N_UNARY && !has_y)) {
                skewless_out_null(out, f, row);
            } else if (f < N_UNARY) {
                o[row] = UNARY[f](x[row]);
            } else if (f == N_UNARY) {
                o[row] = pow(x[row], y[row]);
            } else {
                o[row] = atan2(x[row], y[row]);
            }
        }
    }
    return SKEWLESS_OK;
}
