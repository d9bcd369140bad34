/* The component side of the C SDK: the `transformer` export over skewless.h. */
#include "skewless.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef exports_skewless_transform_transformer_column_t wit_column;
typedef exports_skewless_transform_transformer_column_spec_t wit_spec;

struct out_column {
    void *values;          /* fixed width: rows values; bool: packed bits */
    uint8_t *validity;     /* NULL until the first null */
    uint32_t appended;     /* rows appended (strings and float lists) */
    uint8_t *bytes;        /* string bytes, or float list elements */
    size_t bytes_len, bytes_cap;
    uint32_t *offsets;     /* rows + 1 */
};

struct skewless_output {
    uint32_t rows;
    struct out_column *columns;
};

static char error_message[1024];

static void *alloc_zeroed(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size);
    if (p == NULL) abort();
    return p;
}

int skewless_error(skewless_status status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(error_message, sizeof error_message, format, args);
    va_end(args);
    return (int)status;
}

/* ---- input ---- */

bool skewless_in_valid(const skewless_input *in, size_t column, uint32_t row) {
    const wit_column *c = &in->columns[column];
    if (!c->validity.is_some) return true;
    return (c->validity.val.ptr[row >> 3] >> (row & 7)) & 1;
}

const double *skewless_in_f64(const skewless_input *in, size_t column) {
    return in->columns[column].data.val.float64.ptr;
}

const int64_t *skewless_in_i64(const skewless_input *in, size_t column) {
    /* int64 and timestamp share a representation */
    return in->columns[column].data.val.int64.ptr;
}

bool skewless_in_bool(const skewless_input *in, size_t column, uint32_t row) {
    return (in->columns[column].data.val.boolean.ptr[row >> 3] >> (row & 7)) & 1;
}

skewless_str skewless_in_utf8(const skewless_input *in, size_t column, uint32_t row) {
    const exports_skewless_transform_transformer_utf8_data_t *d = &in->columns[column].data.val.utf8;
    skewless_str s = {(const char *)d->bytes.ptr + d->offsets.ptr[row],
                      d->offsets.ptr[row + 1] - d->offsets.ptr[row]};
    return s;
}

const float *skewless_in_f32_list(const skewless_input *in, size_t column, uint32_t row,
                                  size_t *len) {
    const exports_skewless_transform_transformer_float32_list_data_t *d =
        &in->columns[column].data.val.float32_list;
    *len = d->offsets.ptr[row + 1] - d->offsets.ptr[row];
    return d->values.ptr + d->offsets.ptr[row];
}

/* ---- output ---- */

static struct out_column *out_col(skewless_output *out, size_t column, skewless_dtype a,
                                  skewless_dtype b) {
    if (column >= skewless_output_count) abort();
    skewless_dtype dtype = skewless_outputs[column].dtype;
    if (dtype != a && dtype != b) abort(); /* the wrong accessor for the declared type */
    return &out->columns[column];
}

double *skewless_out_f64(skewless_output *out, size_t column) {
    return out_col(out, column, SKEWLESS_FLOAT64, SKEWLESS_FLOAT64)->values;
}

int64_t *skewless_out_i64(skewless_output *out, size_t column) {
    return out_col(out, column, SKEWLESS_INT64, SKEWLESS_TIMESTAMP)->values;
}

void skewless_out_bool(skewless_output *out, size_t column, uint32_t row, bool value) {
    uint8_t *bits = out_col(out, column, SKEWLESS_BOOL, SKEWLESS_BOOL)->values;
    if (value) bits[row >> 3] |= (uint8_t)(1u << (row & 7));
    else bits[row >> 3] &= (uint8_t)~(1u << (row & 7));
}

void skewless_out_null(skewless_output *out, size_t column, uint32_t row) {
    if (column >= skewless_output_count || row >= out->rows) abort();
    struct out_column *c = &out->columns[column];
    size_t n = ((size_t)out->rows + 7) / 8;
    if (c->validity == NULL) {
        c->validity = alloc_zeroed(n, 1);
        memset(c->validity, 0xff, n);
    }
    c->validity[row >> 3] &= (uint8_t)~(1u << (row & 7));
}

static void append_bytes(skewless_output *out, size_t column, const void *data, size_t len,
                         bool null) {
    struct out_column *c = &out->columns[column];
    if (c->appended >= out->rows) abort(); /* more rows appended than the batch holds */
    if (c->bytes_len + len > c->bytes_cap) {
        size_t cap = c->bytes_cap ? c->bytes_cap : 64;
        while (cap < c->bytes_len + len) cap *= 2;
        c->bytes = realloc(c->bytes, cap);
        if (c->bytes == NULL) abort();
        c->bytes_cap = cap;
    }
    if (len) memcpy(c->bytes + c->bytes_len, data, len);
    c->bytes_len += len;
    uint32_t row = c->appended++;
    size_t unit = skewless_outputs[column].dtype == SKEWLESS_FLOAT32_LIST ? sizeof(float) : 1;
    c->offsets[row + 1] = (uint32_t)(c->bytes_len / unit);
    if (null) skewless_out_null(out, column, row);
}

void skewless_out_utf8_append(skewless_output *out, size_t column, const char *ptr, size_t len) {
    out_col(out, column, SKEWLESS_UTF8, SKEWLESS_UTF8);
    append_bytes(out, column, ptr, len, false);
}

void skewless_out_f32_list_append(skewless_output *out, size_t column, const float *values,
                                  size_t len) {
    out_col(out, column, SKEWLESS_FLOAT32_LIST, SKEWLESS_FLOAT32_LIST);
    append_bytes(out, column, values, len * sizeof(float), false);
}

void skewless_out_append_null(skewless_output *out, size_t column) {
    out_col(out, column, SKEWLESS_UTF8, SKEWLESS_FLOAT32_LIST);
    append_bytes(out, column, NULL, 0, true);
}

/* ---- the export ---- */

static void spec_list(exports_skewless_transform_transformer_list_column_spec_t *ret,
                      const skewless_column *columns, size_t count) {
    ret->ptr = alloc_zeroed(count, sizeof(wit_spec));
    ret->len = count;
    for (size_t i = 0; i < count; i++) {
        feature_transform_string_dup(&ret->ptr[i].name, columns[i].name);
        ret->ptr[i].dtype = (exports_skewless_transform_transformer_dtype_t)columns[i].dtype;
        ret->ptr[i].nullable = columns[i].nullable;
    }
}

void exports_skewless_transform_transformer_describe(
    exports_skewless_transform_transformer_signature_t *ret) {
    spec_list(&ret->inputs, skewless_inputs, skewless_input_count);
    spec_list(&ret->outputs, skewless_outputs, skewless_output_count);
}

static bool fail(exports_skewless_transform_transformer_transform_error_t *err, int status) {
    switch (status) {
    case SKEWLESS_INVALID_INPUT:
        err->tag = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_TRANSFORM_ERROR_INVALID_INPUT;
        break;
    case SKEWLESS_COMPUTATION:
        err->tag = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_TRANSFORM_ERROR_COMPUTATION;
        break;
    default:
        err->tag = EXPORTS_SKEWLESS_TRANSFORM_TRANSFORMER_TRANSFORM_ERROR_OTHER;
        break;
    }
    /* Every case of the variant holds a string at the same place. */
    feature_transform_string_dup(&err->val.other, error_message[0] ? error_message
                                                                   : "C transform failed");
    return false;
}

static bool name_is(const feature_transform_string_t *s, const char *name) {
    size_t n = strlen(name);
    return s->len == n && memcmp(s->ptr, name, n) == 0;
}

static void free_output(skewless_output *out) {
    for (size_t i = 0; i < skewless_output_count; i++) {
        free(out->columns[i].values);
        free(out->columns[i].validity);
        free(out->columns[i].bytes);
        free(out->columns[i].offsets);
    }
    free(out->columns);
}

/* Moves the built output into the WIT batch (the post-return function frees it). */
static int finish(skewless_output *out, exports_skewless_transform_transformer_batch_t *ret) {
    uint32_t rows = out->rows;
    for (size_t i = 0; i < skewless_output_count; i++) {
        const skewless_column *spec = &skewless_outputs[i];
        struct out_column *c = &out->columns[i];
        bool appended = spec->dtype == SKEWLESS_UTF8 || spec->dtype == SKEWLESS_FLOAT32_LIST;
        if (appended && c->appended != rows) {
            return skewless_error(SKEWLESS_OTHER, "output %s: %u rows appended for %u input rows",
                                  spec->name, c->appended, rows);
        }
        if (c->validity != NULL && !spec->nullable) {
            return skewless_error(SKEWLESS_OTHER, "output %s: a null in a non-nullable column",
                                  spec->name);
        }
    }
    ret->rows = rows;
    ret->columns.len = skewless_output_count;
    ret->columns.ptr = alloc_zeroed(skewless_output_count, sizeof(wit_column));
    for (size_t i = 0; i < skewless_output_count; i++) {
        const skewless_column *spec = &skewless_outputs[i];
        struct out_column *c = &out->columns[i];
        wit_column *w = &ret->columns.ptr[i];
        feature_transform_string_dup(&w->name, spec->name);
        if (c->validity != NULL) {
            w->validity.is_some = true;
            w->validity.val.ptr = c->validity;
            w->validity.val.len = ((size_t)rows + 7) / 8;
        }
        w->data.tag = (uint8_t)spec->dtype;
        switch (spec->dtype) {
        case SKEWLESS_BOOL:
            w->data.val.boolean.ptr = c->values;
            w->data.val.boolean.len = ((size_t)rows + 7) / 8;
            break;
        case SKEWLESS_INT64:
        case SKEWLESS_TIMESTAMP:
            w->data.val.int64.ptr = c->values;
            w->data.val.int64.len = rows;
            break;
        case SKEWLESS_FLOAT64:
            w->data.val.float64.ptr = c->values;
            w->data.val.float64.len = rows;
            break;
        case SKEWLESS_UTF8:
            w->data.val.utf8.offsets.ptr = c->offsets;
            w->data.val.utf8.offsets.len = (size_t)rows + 1;
            w->data.val.utf8.bytes.ptr = c->bytes;
            w->data.val.utf8.bytes.len = c->bytes_len;
            break;
        case SKEWLESS_FLOAT32_LIST:
            w->data.val.float32_list.offsets.ptr = c->offsets;
            w->data.val.float32_list.offsets.len = (size_t)rows + 1;
            w->data.val.float32_list.values.ptr = (float *)c->bytes;
            w->data.val.float32_list.values.len = c->bytes_len / sizeof(float);
            break;
        }
    }
    free(out->columns);
    return SKEWLESS_OK;
}

bool exports_skewless_transform_transformer_transform(
    exports_skewless_transform_transformer_batch_t *input,
    exports_skewless_transform_transformer_batch_t *ret,
    exports_skewless_transform_transformer_transform_error_t *err) {
    error_message[0] = '\0';
    int status = SKEWLESS_OK;
    if (input->columns.len != skewless_input_count) {
        status = skewless_error(SKEWLESS_INVALID_INPUT, "%zu input columns, %zu declared",
                                input->columns.len, skewless_input_count);
    }
    for (size_t i = 0; status == SKEWLESS_OK && i < skewless_input_count; i++) {
        const wit_column *c = &input->columns.ptr[i];
        if (!name_is(&c->name, skewless_inputs[i].name) ||
            c->data.tag != (uint8_t)skewless_inputs[i].dtype) {
            status = skewless_error(SKEWLESS_INVALID_INPUT,
                                    "input column %zu is not %s as declared", i,
                                    skewless_inputs[i].name);
        }
    }
    if (status != SKEWLESS_OK) {
        exports_skewless_transform_transformer_batch_free(input);
        return fail(err, status);
    }

    skewless_input in = {input->rows, input->columns.ptr};
    skewless_output out = {input->rows, alloc_zeroed(skewless_output_count, sizeof(struct out_column))};
    size_t bits = ((size_t)input->rows + 7) / 8;
    for (size_t i = 0; i < skewless_output_count; i++) {
        struct out_column *c = &out.columns[i];
        switch (skewless_outputs[i].dtype) {
        case SKEWLESS_BOOL: c->values = alloc_zeroed(bits, 1); break;
        case SKEWLESS_INT64:
        case SKEWLESS_TIMESTAMP: c->values = alloc_zeroed(input->rows, sizeof(int64_t)); break;
        case SKEWLESS_FLOAT64: c->values = alloc_zeroed(input->rows, sizeof(double)); break;
        default: c->offsets = alloc_zeroed((size_t)input->rows + 1, sizeof(uint32_t)); break;
        }
    }
    status = skewless_transform(&in, &out);
    if (status == SKEWLESS_OK) status = finish(&out, ret);
    exports_skewless_transform_transformer_batch_free(input);
    if (status != SKEWLESS_OK) {
        free_output(&out);
        return fail(err, status);
    }
    return true;
}
