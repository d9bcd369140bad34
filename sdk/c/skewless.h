/*
 * Write Skewless feature transforms in C.
 *
 * A transform declares its columns and implements one function over a batch:
 *
 *     #include "skewless.h"
 *
 *     SKEWLESS_INPUTS(
 *         {"amount", SKEWLESS_FLOAT64, true},
 *     );
 *     SKEWLESS_OUTPUTS(
 *         {"amount_doubled", SKEWLESS_FLOAT64, true},
 *     );
 *
 *     int skewless_transform(const skewless_input *in, skewless_output *out) {
 *         const double *amount = skewless_in_f64(in, 0);
 *         double *doubled = skewless_out_f64(out, 0);
 *         for (uint32_t row = 0; row < in->rows; row++) {
 *             if (!skewless_in_valid(in, 0, row)) { skewless_out_null(out, 0, row); continue; }
 *             doubled[row] = amount[row] * 2.0;
 *         }
 *         return SKEWLESS_OK;
 *     }
 *
 * Columns are addressed by their index in the declaration. The SDK checks the batch the
 * host passes against the declaration before calling skewless_transform, owns every
 * buffer, and frees what it must: a transform allocates nothing itself. `skewless build
 * PATH` generates the component bindings (wit-bindgen c), compiles with clang for
 * wasm32-wasi against wasi-libc, and wraps the module into a component.
 *
 * C's + - * / and sqrt are IEEE 754 binary64 operations with correct rounding, and the
 * math library is wasi-libc's, the one Rust guests link too: log1p, exp and pow give the
 * same bits as the Rust transform's.
 */
#ifndef SKEWLESS_H
#define SKEWLESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "feature_transform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Column types, as in the WIT contract. */
typedef enum skewless_dtype {
    SKEWLESS_BOOL = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_BOOLEAN,
    SKEWLESS_INT64 = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_INT64,
    SKEWLESS_FLOAT64 = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_FLOAT64,
    SKEWLESS_UTF8 = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_UTF8,
    SKEWLESS_TIMESTAMP = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_TIMESTAMP,
    SKEWLESS_FLOAT32_LIST = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_DTYPE_FLOAT32_LIST,
} skewless_dtype;

/* One declared column. */
typedef struct skewless_column {
    const char *name;
    skewless_dtype dtype;
    bool nullable;
} skewless_column;

/* What skewless_transform returns. */
typedef enum skewless_status {
    SKEWLESS_OK = 0,
    /* The input is not what the transform expects. */
    SKEWLESS_INVALID_INPUT = 1,
    /* The computation failed for a row. */
    SKEWLESS_COMPUTATION = 2,
    /* Any other failure. */
    SKEWLESS_OTHER = 3,
} skewless_status;

/* The input batch: the declared inputs, in declared order. */
typedef struct skewless_input {
    uint32_t rows;
    const exports_skewless_transform_transformer_column_t *columns;
} skewless_input;

/* The output batch being built: the declared outputs, in declared order. */
typedef struct skewless_output skewless_output;

/* A string value: `len` bytes of UTF-8, not NUL-terminated. */
typedef struct skewless_str {
    const char *ptr;
    size_t len;
} skewless_str;

/* The declarations a transform makes once, at file scope. */
extern const skewless_column skewless_inputs[];
extern const size_t skewless_input_count;
extern const skewless_column skewless_outputs[];
extern const size_t skewless_output_count;

#define SKEWLESS_INPUTS(...)                                                                \
    const skewless_column skewless_inputs[] = {__VA_ARGS__};                                \
    const size_t skewless_input_count = sizeof(skewless_inputs) / sizeof(skewless_column)
#define SKEWLESS_OUTPUTS(...)                                                               \
    const skewless_column skewless_outputs[] = {__VA_ARGS__};                               \
    const size_t skewless_output_count = sizeof(skewless_outputs) / sizeof(skewless_column)

/* The transform, written by the author. Returns SKEWLESS_OK, or an error status after
 * skewless_error(...) has set the message. */
int skewless_transform(const skewless_input *in, skewless_output *out);

/* Input access. A value at a null row is unspecified: check skewless_in_valid. */
bool skewless_in_valid(const skewless_input *in, size_t column, uint32_t row);
const double *skewless_in_f64(const skewless_input *in, size_t column);
const int64_t *skewless_in_i64(const skewless_input *in, size_t column);
bool skewless_in_bool(const skewless_input *in, size_t column, uint32_t row);
skewless_str skewless_in_utf8(const skewless_input *in, size_t column, uint32_t row);
/* The floats of one float32_list row; `*len` receives their count. */
const float *skewless_in_f32_list(const skewless_input *in, size_t column, uint32_t row,
                                  size_t *len);

/* Output building. Fixed-width outputs are zeroed arrays of `rows` values to fill in;
 * strings and float lists are appended row by row, in order, null rows included. */
double *skewless_out_f64(skewless_output *out, size_t column);
int64_t *skewless_out_i64(skewless_output *out, size_t column);
void skewless_out_bool(skewless_output *out, size_t column, uint32_t row, bool value);
void skewless_out_null(skewless_output *out, size_t column, uint32_t row);
void skewless_out_utf8_append(skewless_output *out, size_t column, const char *ptr, size_t len);
void skewless_out_f32_list_append(skewless_output *out, size_t column, const float *values,
                                  size_t len);
/* Appends a null row to a string or float list output. */
void skewless_out_append_null(skewless_output *out, size_t column);

/* Sets the error message (printf-style) and returns `status`, so that a transform can
 * `return skewless_error(SKEWLESS_COMPUTATION, "row %u: ...", row);`. */
int skewless_error(skewless_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif /* SKEWLESS_H */
