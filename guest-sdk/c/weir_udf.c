/*
 * weir_udf.c — the C SDK's glue between weir_udf.h and the bindings that
 * wit-bindgen generates for one world (bindings.h). `weir udf build` compiles
 * it with -DWEIR_WORLD_<WORLD> for the world of the operator.
 */
#include "weir_udf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"

/* The bindings reference the object file wit-bindgen can emit with the
 * world's type; `weir udf build` embeds that type itself instead. */
void __component_type_object_force_link_bindings(void) {}

/* ---- small growable buffers -------------------------------------------- */

typedef struct vec {
    uint8_t *ptr;
    size_t len, cap;
} vec;

static void vec_reserve(vec *v, size_t more) {
    if (v->len + more <= v->cap) return;
    size_t cap = v->cap ? v->cap * 2 : 64;
    while (cap < v->len + more) cap *= 2;
    v->ptr = realloc(v->ptr, cap);
    if (!v->ptr) abort();
    v->cap = cap;
}

static void vec_push(vec *v, const void *data, size_t len) {
    vec_reserve(v, len);
    if (len) memcpy(v->ptr + v->len, data, len);
    v->len += len;
}

/* Formats at the end of `v`: one pass when the text fits the spare
 * capacity, a second only when the buffer must grow. */
static void vec_vprintf(vec *v, const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    size_t spare = v->cap - v->len;
    int n = vsnprintf(spare ? (char *)v->ptr + v->len : NULL, spare, fmt, copy);
    va_end(copy);
    if (n < 0) return;
    if ((size_t)n >= spare) {
        vec_reserve(v, (size_t)n + 1);
        vsnprintf((char *)v->ptr + v->len, (size_t)n + 1, fmt, ap);
    }
    v->len += (size_t)n;
}

#define PUSH(v, x) vec_push((v), &(x), sizeof(x))

/* Frees a buffer the host allocated: an empty list's pointer is only its
 * alignment, never allocated, so it must not be freed. */
static void host_free(void *ptr, size_t len) {
    if (len > 0) free(ptr);
}

/* ---- errors ------------------------------------------------------------ */

static weir_error_kind last_kind;
static vec last_message;

weir_status weir_error(weir_error_kind kind, const char *fmt, ...) {
    last_kind = kind;
    last_message.len = 0;
    va_list ap;
    va_start(ap, fmt);
    vec_vprintf(&last_message, fmt, ap);
    va_end(ap);
    return WEIR_ERROR;
}

static void take_error(weir_udf_types_error_t *err) {
    if (last_message.len == 0) weir_error(WEIR_FAILED, "operator failed without a message");
    err->tag = (uint8_t)last_kind;
    bindings_string_t s = {malloc(last_message.len), last_message.len};
    memcpy(s.ptr, last_message.ptr, last_message.len);
    err->val.failed = s; /* the three cases share one layout */
    last_message.len = 0;
}

/* ---- bytes and records ---------------------------------------------------- */

void weir_buf_free(weir_buf *buf) {
    host_free(buf->ptr, buf->len);
    buf->ptr = NULL;
    buf->len = 0;
}

bool weir_bytes_eq(weir_bytes b, const char *s) {
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

bool weir_parse_i64(weir_bytes b, int64_t *out, size_t *used) {
    size_t i = 0;
    bool neg = b.len > 0 && b.ptr[0] == '-';
    if (neg) i++;
    size_t start = i;
    int64_t v = 0;
    while (i < b.len && b.ptr[i] >= '0' && b.ptr[i] <= '9') v = v * 10 + (b.ptr[i++] - '0');
    if (i == start) return false;
    *out = neg ? -v : v;
    if (used) *used = i;
    return true;
}

static weir_bytes column_get(const weir_udf_types_bytes_column_t *c, size_t i) {
    uint32_t a = c->offsets.ptr[i], b = c->offsets.ptr[i + 1];
    return (weir_bytes){c->data.ptr + a, b - a};
}

static size_t batch_rows(const weir_udf_types_batch_t *b) { return b->timestamps.len; }

static weir_record batch_record(const weir_udf_types_batch_t *b, size_t i) {
    return (weir_record){
        .index = i,
        .key = column_get(&b->keys, i),
        .value = column_get(&b->values, i),
        .timestamp = b->timestamps.ptr[i],
        .batch_ = b,
    };
}

bool weir_record_header(const weir_record *r, const char *name, weir_bytes *value) {
    const weir_udf_types_batch_t *b = r->batch_;
    const weir_udf_types_headers_t *h = &b->headers;
    if (h->row_offsets.len == 0) return false;
    for (uint32_t e = h->row_offsets.ptr[r->index]; e < h->row_offsets.ptr[r->index + 1]; e++) {
        if (weir_bytes_eq(column_get(&h->names, e), name)) {
            *value = column_get(&h->values, e);
            return true;
        }
    }
    return false;
}

/* ---- configuration ------------------------------------------------------ */

struct weir_config {
    size_t len;
    char **keys, **values;
};

static weir_config config_from(weir_udf_types_config_t *c) {
    weir_config cfg = {c->len, calloc(c->len + 1, sizeof(char *)), calloc(c->len + 1, sizeof(char *))};
    for (size_t i = 0; i < c->len; i++) {
        bindings_string_t k = c->ptr[i].f0, v = c->ptr[i].f1;
        cfg.keys[i] = strndup((const char *)k.ptr, k.len);
        cfg.values[i] = strndup((const char *)v.ptr, v.len);
    }
    return cfg;
}

static void config_free(weir_config *cfg) {
    for (size_t i = 0; i < cfg->len; i++) {
        free(cfg->keys[i]);
        free(cfg->values[i]);
    }
    free(cfg->keys);
    free(cfg->values);
}

const char *weir_config_get(const weir_config *cfg, const char *key) {
    for (size_t i = 0; i < cfg->len; i++)
        if (strcmp(cfg->keys[i], key) == 0) return cfg->values[i];
    return NULL;
}

weir_status weir_config_int(const weir_config *cfg, const char *key, int64_t dflt, int64_t *out) {
    const char *raw = weir_config_get(cfg, key);
    if (!raw) {
        *out = dflt;
        return WEIR_OK;
    }
    char *end;
    errno = 0;
    long long v = strtoll(raw, &end, 10);
    if (*raw == 0 || *end != 0 || errno == ERANGE)
        return weir_error(WEIR_INVALID_CONFIG, "`%s` = \"%s\" is not an integer", key, raw);
    *out = v;
    return WEIR_OK;
}

__attribute__((weak)) weir_status weir_init(const weir_config *config) {
    (void)config;
    return WEIR_OK;
}

static bool run_init(weir_udf_types_config_t *config, weir_udf_types_error_t *err) {
    weir_config cfg = config_from(config);
    weir_status st = weir_init(&cfg);
    config_free(&cfg);
    weir_udf_types_config_free(config);
    if (st != WEIR_OK) {
        take_error(err);
        return false;
    }
    return true;
}

/* ---- output -------------------------------------------------------------- */

/* The key of an output row: borrowed from the input, or set (and owned). */
typedef struct row_key {
    const uint8_t *ptr;
    size_t len;
    bool owned;
} row_key;

struct weir_output {
    vec parents, data, offsets, timestamps, keys; /* keys: row_key per row */
    bool any_key, any_timestamp;
    uint32_t parent;         /* row (or pane) being processed */
    weir_bytes parent_key;   /* its key */
    int64_t parent_ts;       /* its event time */
};

static void output_begin(weir_output *o, uint32_t parent, weir_bytes key, int64_t ts) {
    o->parent = parent;
    o->parent_key = key;
    o->parent_ts = ts;
}

static void output_init(weir_output *o) {
    memset(o, 0, sizeof *o);
    uint32_t zero = 0;
    PUSH(&o->offsets, zero);
}

static void output_row_done(weir_output *o) {
    uint32_t end = (uint32_t)o->data.len;
    PUSH(&o->offsets, end);
    PUSH(&o->parents, o->parent);
    row_key k = {o->parent_key.ptr, o->parent_key.len, false};
    PUSH(&o->keys, k);
    PUSH(&o->timestamps, o->parent_ts);
}

void weir_emit(weir_output *o, const void *value, size_t len) {
    vec_push(&o->data, value, len);
    output_row_done(o);
}

void weir_emit_str(weir_output *o, const char *value) { weir_emit(o, value, strlen(value)); }

void weir_emitf(weir_output *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vec_vprintf(&o->data, fmt, ap);
    va_end(ap);
    output_row_done(o);
}

static size_t output_rows(const weir_output *o) { return o->parents.len / sizeof(uint32_t); }

void weir_set_key(weir_output *o, const void *key, size_t len) {
    size_t rows = output_rows(o);
    if (rows == 0) return;
    row_key *k = &((row_key *)o->keys.ptr)[rows - 1];
    if (k->owned) free((void *)k->ptr);
    uint8_t *copy = malloc(len + 1);
    if (len) memcpy(copy, key, len);
    *k = (row_key){copy, len, true};
    o->any_key = true;
}

void weir_set_timestamp(weir_output *o, int64_t ts) {
    size_t rows = output_rows(o);
    if (rows == 0) return;
    ((int64_t *)o->timestamps.ptr)[rows - 1] = ts;
    o->any_timestamp = true;
}

static void free_row_keys(weir_output *o) {
    row_key *k = (row_key *)o->keys.ptr;
    for (size_t i = 0; i < o->keys.len / sizeof(row_key); i++)
        if (k[i].owned) free((void *)k[i].ptr);
    free(o->keys.ptr);
}

static weir_udf_types_bytes_column_t column_from(vec *data, vec *offsets) {
    return (weir_udf_types_bytes_column_t){
        .data = {data->ptr, data->len},
        .offsets = {(uint32_t *)offsets->ptr, offsets->len / sizeof(uint32_t)},
    };
}

/* Moves the output into the WIT record (the post-return call frees it).
 * `dense` leaves `parents` empty (map: one row per input row, in order). */
static void output_finish(weir_output *o, weir_udf_types_output_t *ret, bool dense) {
    memset(ret, 0, sizeof *ret);
    if (dense) {
        free(o->parents.ptr);
    } else {
        ret->parents = (bindings_list_u32_t){(uint32_t *)o->parents.ptr, output_rows(o)};
    }
    ret->values = column_from(&o->data, &o->offsets);
    if (o->any_key) {
        vec data = {0}, offsets = {0};
        uint32_t off = 0;
        PUSH(&offsets, off);
        row_key *k = (row_key *)o->keys.ptr;
        for (size_t i = 0; i < output_rows(o); i++) {
            vec_push(&data, k[i].ptr, k[i].len);
            off = (uint32_t)data.len;
            PUSH(&offsets, off);
        }
        ret->keys.is_some = true;
        ret->keys.val = column_from(&data, &offsets);
    }
    free_row_keys(o);
    if (o->any_timestamp) {
        ret->timestamps.is_some = true;
        ret->timestamps.val = (bindings_list_s64_t){(int64_t *)o->timestamps.ptr, output_rows(o)};
    } else {
        free(o->timestamps.ptr);
    }
}

static void output_discard(weir_output *o) {
    free(o->parents.ptr);
    free(o->data.ptr);
    free(o->offsets.ptr);
    free(o->timestamps.ptr);
    free_row_keys(o);
}

/* ---- logging --------------------------------------------------------------- */

void weir_log(weir_log_level level, const char *fmt, ...) {
    vec v = {0};
    va_list ap;
    va_start(ap, fmt);
    vec_vprintf(&v, fmt, ap);
    va_end(ap);
    bindings_string_t s = {v.ptr, v.len};
    weir_udf_log_log((weir_udf_log_level_t)level, &s);
    free(v.ptr);
}

/* ---- filter-operator ------------------------------------------------------ */

#ifdef WEIR_WORLD_FILTER_OPERATOR
bool exports_weir_udf_filter_init(weir_udf_types_config_t *config, weir_udf_types_error_t *err) {
    return run_init(config, err);
}

bool exports_weir_udf_filter_filter(weir_udf_types_batch_t *input, bindings_list_u32_t *ret,
                                    weir_udf_types_error_t *err) {
    vec keep = {0};
    size_t rows = batch_rows(input);
    for (size_t i = 0; i < rows; i++) {
        weir_record r = batch_record(input, i);
        bool k = false;
        if (weir_filter(&r, &k) != WEIR_OK) {
            free(keep.ptr);
            weir_udf_types_batch_free(input);
            take_error(err);
            return false;
        }
        if (k) {
            uint32_t idx = (uint32_t)i;
            PUSH(&keep, idx);
        }
    }
    weir_udf_types_batch_free(input);
    *ret = (bindings_list_u32_t){(uint32_t *)keep.ptr, keep.len / sizeof(uint32_t)};
    return true;
}
#endif

/* ---- map-operator and flat-map-operator ------------------------------------ */

#if defined(WEIR_WORLD_MAP_OPERATOR) || defined(WEIR_WORLD_FLAT_MAP_OPERATOR)
static bool map_rows(weir_udf_types_batch_t *input, weir_udf_types_output_t *ret,
                     weir_udf_types_error_t *err, bool flat) {
    weir_output o;
    output_init(&o);
    size_t rows = batch_rows(input);
    for (size_t i = 0; i < rows; i++) {
        weir_record r = batch_record(input, i);
        output_begin(&o, (uint32_t)i, r.key, r.timestamp);
        size_t before = output_rows(&o);
#ifdef WEIR_WORLD_MAP_OPERATOR
        weir_status st = weir_map(&r, &o);
#else
        weir_status st = weir_flat_map(&r, &o);
#endif
        if (st == WEIR_OK && !flat && output_rows(&o) != before + 1)
            st = weir_error(WEIR_FAILED, "weir_map emitted %zu rows for record %zu; a map emits exactly one",
                            output_rows(&o) - before, i);
        if (st != WEIR_OK) {
            output_discard(&o);
            weir_udf_types_batch_free(input);
            take_error(err);
            return false;
        }
    }
    output_finish(&o, ret, !flat);
    weir_udf_types_batch_free(input);
    return true;
}
#endif

#ifdef WEIR_WORLD_MAP_OPERATOR
bool exports_weir_udf_mapper_init(weir_udf_types_config_t *config, weir_udf_types_error_t *err) {
    return run_init(config, err);
}
bool exports_weir_udf_mapper_map_batch(weir_udf_types_batch_t *input, weir_udf_types_output_t *ret,
                                       weir_udf_types_error_t *err) {
    return map_rows(input, ret, err, false);
}
#endif

#ifdef WEIR_WORLD_FLAT_MAP_OPERATOR
bool exports_weir_udf_flat_mapper_init(weir_udf_types_config_t *config, weir_udf_types_error_t *err) {
    return run_init(config, err);
}
bool exports_weir_udf_flat_mapper_flat_map_batch(weir_udf_types_batch_t *input,
                                                 weir_udf_types_output_t *ret,
                                                 weir_udf_types_error_t *err) {
    return map_rows(input, ret, err, true);
}
#endif

/* ---- aggregate-operator ---------------------------------------------------- */

#ifdef WEIR_WORLD_AGGREGATE_OPERATOR
bool exports_weir_udf_aggregator_init(weir_udf_types_config_t *config, weir_udf_types_error_t *err) {
    return run_init(config, err);
}

bool exports_weir_udf_aggregator_create_accumulator(bindings_list_u8_t *ret, weir_udf_types_error_t *err) {
    size_t n = weir_accumulator_size;
    uint8_t *acc = calloc(1, n ? n : 1);
    if (weir_create_accumulator(acc) != WEIR_OK) {
        free(acc);
        take_error(err);
        return false;
    }
    *ret = (bindings_list_u8_t){acc, n};
    return true;
}

/* Copies accumulator `i` of `accs` into `slot`, checking its size. */
static weir_status load_acc(const weir_udf_types_bytes_column_t *accs, size_t i, uint8_t *slot) {
    weir_bytes b = column_get(accs, i);
    if (b.len != weir_accumulator_size)
        return weir_error(WEIR_FAILED, "accumulator %zu has %zu bytes; this operator's has %zu", i, b.len,
                          weir_accumulator_size);
    memcpy(slot, b.ptr, b.len);
    return WEIR_OK;
}

static void accs_to_column(uint8_t *slots, size_t n, weir_udf_types_bytes_column_t *ret) {
    uint32_t *offsets = malloc((n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i <= n; i++) offsets[i] = (uint32_t)(i * weir_accumulator_size);
    ret->data = (bindings_list_u8_t){slots, n * weir_accumulator_size};
    ret->offsets = (bindings_list_u32_t){offsets, n + 1};
}

bool exports_weir_udf_aggregator_add(weir_udf_types_bytes_column_t *accs, bindings_list_u32_t *groups,
                                     weir_udf_types_batch_t *records, weir_udf_types_bytes_column_t *ret,
                                     weir_udf_types_error_t *err) {
    size_t n = accs->offsets.len ? accs->offsets.len - 1 : 0, size = weir_accumulator_size;
    uint8_t *slots = malloc(n * size + 1);
    size_t rows = batch_rows(records);
    weir_status st = groups->len == rows
                         ? WEIR_OK
                         : weir_error(WEIR_FAILED, "%zu groups for %zu records", groups->len, rows);
    for (size_t i = 0; i < n && st == WEIR_OK; i++) st = load_acc(accs, i, slots + i * size);
    for (size_t r = 0; r < rows && st == WEIR_OK; r++) {
        uint32_t g = groups->ptr[r];
        if (g >= n) {
            st = weir_error(WEIR_FAILED, "row %zu names accumulator %u of %zu", r, g, n);
            break;
        }
        weir_record rec = batch_record(records, r);
        st = weir_add(slots + (size_t)g * size, &rec);
    }
    weir_udf_types_bytes_column_free(accs);
    host_free(groups->ptr, groups->len);
    weir_udf_types_batch_free(records);
    if (st != WEIR_OK) {
        free(slots);
        take_error(err);
        return false;
    }
    accs_to_column(slots, n, ret);
    return true;
}

bool exports_weir_udf_aggregator_merge(weir_udf_types_bytes_column_t *accs, bindings_list_u32_t *groups,
                                       weir_udf_types_bytes_column_t *ret, weir_udf_types_error_t *err) {
    size_t n = accs->offsets.len ? accs->offsets.len - 1 : 0, size = weir_accumulator_size;
    size_t out = 0;
    for (size_t i = 0; i < groups->len; i++)
        if (groups->ptr[i] + 1 > out) out = groups->ptr[i] + 1;
    uint8_t *slots = malloc(out * size + 1), *seen = calloc(out + 1, 1), *tmp = malloc(size + 1);
    weir_status st = groups->len == n
                         ? WEIR_OK
                         : weir_error(WEIR_FAILED, "%zu groups for %zu accumulators", groups->len, n);
    for (size_t i = 0; i < n && st == WEIR_OK; i++) {
        uint32_t g = groups->ptr[i];
        if (!seen[g]) {
            st = load_acc(accs, i, slots + (size_t)g * size);
            seen[g] = 1;
        } else if ((st = load_acc(accs, i, tmp)) == WEIR_OK) {
            st = weir_merge(slots + (size_t)g * size, tmp);
        }
    }
    free(seen);
    free(tmp);
    weir_udf_types_bytes_column_free(accs);
    host_free(groups->ptr, groups->len);
    if (st != WEIR_OK) {
        free(slots);
        take_error(err);
        return false;
    }
    accs_to_column(slots, out, ret);
    return true;
}

bool exports_weir_udf_aggregator_get_results(exports_weir_udf_aggregator_list_fired_pane_t *panes,
                                             weir_udf_types_output_t *ret, weir_udf_types_error_t *err) {
    weir_output o;
    output_init(&o);
    uint8_t *slot = malloc(weir_accumulator_size + 1);
    weir_status st = WEIR_OK;
    for (size_t i = 0; i < panes->len && st == WEIR_OK; i++) {
        exports_weir_udf_aggregator_fired_pane_t *p = &panes->ptr[i];
        weir_pane pane = {{p->key.ptr, p->key.len}, p->window.start, p->window.end};
        output_begin(&o, (uint32_t)i, pane.key, pane.end - 1);
        if (p->accumulator.len != weir_accumulator_size) {
            st = weir_error(WEIR_FAILED, "pane %zu has an accumulator of %zu bytes; this operator's has %zu", i,
                            p->accumulator.len, weir_accumulator_size);
            break;
        }
        memcpy(slot, p->accumulator.ptr, weir_accumulator_size);
        st = weir_get_result(slot, &pane, &o);
    }
    free(slot);
    exports_weir_udf_aggregator_list_fired_pane_free(panes);
    if (st != WEIR_OK) {
        output_discard(&o);
        take_error(err);
        return false;
    }
    output_finish(&o, ret, false);
    return true;
}
#endif

/* ---- keyed-process-operator ------------------------------------------------- */

#ifdef WEIR_WORLD_KEYED_PROCESS_OPERATOR
struct weir_keyed {
    weir_bytes key;
    vec data, offsets, timestamps, outputs;
    bool any_side;
    char **side_names;
    size_t sides;
};

weir_bytes weir_current_key(const weir_keyed *ctx) { return ctx->key; }

static void keyed_row(weir_keyed *c, uint8_t output, int64_t ts) {
    uint32_t end = (uint32_t)c->data.len;
    PUSH(&c->offsets, end);
    PUSH(&c->timestamps, ts);
    PUSH(&c->outputs, output);
}

void weir_keyed_emit(weir_keyed *c, const void *value, size_t len, int64_t ts) {
    vec_push(&c->data, value, len);
    keyed_row(c, 0, ts);
}

void weir_keyed_emitf(weir_keyed *c, int64_t ts, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vec_vprintf(&c->data, fmt, ap);
    va_end(ap);
    keyed_row(c, 0, ts);
}

void weir_keyed_emit_side(weir_keyed *c, const char *name, const void *value, size_t len, int64_t ts) {
    size_t i = 0;
    while (i < c->sides && strcmp(c->side_names[i], name) != 0) i++;
    if (i == c->sides) {
        c->side_names = realloc(c->side_names, (c->sides + 1) * sizeof(char *));
        c->side_names[c->sides++] = strdup(name);
    }
    vec_push(&c->data, value, len);
    c->any_side = true;
    keyed_row(c, (uint8_t)(i + 1), ts);
}

static void keyed_begin(weir_keyed *c, bindings_list_u8_t *key) {
    memset(c, 0, sizeof *c);
    c->key = (weir_bytes){key->ptr, key->len};
    uint32_t zero = 0;
    PUSH(&c->offsets, zero);
}

static bool keyed_finish(weir_keyed *c, weir_status st, bindings_list_u8_t *key,
                         exports_weir_udf_keyed_processor_emitted_t *ret, weir_udf_types_error_t *err) {
    host_free(key->ptr, key->len);
    if (st != WEIR_OK) {
        free(c->data.ptr);
        free(c->offsets.ptr);
        free(c->timestamps.ptr);
        free(c->outputs.ptr);
        for (size_t i = 0; i < c->sides; i++) free(c->side_names[i]);
        free(c->side_names);
        take_error(err);
        return false;
    }
    memset(ret, 0, sizeof *ret);
    ret->values = column_from(&c->data, &c->offsets);
    ret->timestamps = (bindings_list_s64_t){(int64_t *)c->timestamps.ptr, c->timestamps.len / sizeof(int64_t)};
    if (c->any_side) {
        ret->outputs = (bindings_list_u8_t){c->outputs.ptr, c->outputs.len};
        bindings_string_t *names = malloc((c->sides + 1) * sizeof(bindings_string_t));
        for (size_t i = 0; i < c->sides; i++)
            names[i] = (bindings_string_t){(uint8_t *)c->side_names[i], strlen(c->side_names[i])};
        ret->side_outputs.ptr = names;
        ret->side_outputs.len = c->sides;
    } else {
        free(c->outputs.ptr);
    }
    free(c->side_names);
    return true;
}

bool exports_weir_udf_keyed_processor_init(weir_udf_types_config_t *config, weir_udf_types_error_t *err) {
    return run_init(config, err);
}

bool exports_weir_udf_keyed_processor_process(bindings_list_u8_t *key, weir_udf_types_batch_t *records,
                                              exports_weir_udf_keyed_processor_emitted_t *ret,
                                              weir_udf_types_error_t *err) {
    weir_keyed c;
    keyed_begin(&c, key);
    weir_status st = WEIR_OK;
    size_t rows = batch_rows(records);
    for (size_t i = 0; i < rows && st == WEIR_OK; i++) {
        weir_record r = batch_record(records, i);
        st = weir_process(&c, &r);
    }
    weir_udf_types_batch_free(records);
    return keyed_finish(&c, st, key, ret, err);
}

__attribute__((weak)) weir_status weir_on_timer(weir_keyed *ctx, int64_t ts, weir_time_domain domain) {
    (void)ctx;
    (void)domain;
    return weir_error(WEIR_FAILED, "a timer fired at %lld but the operator defines no weir_on_timer",
                      (long long)ts);
}

bool exports_weir_udf_keyed_processor_on_timer(bindings_list_u8_t *key,
                                               exports_weir_udf_keyed_processor_list_timer_t *timers,
                                               exports_weir_udf_keyed_processor_emitted_t *ret,
                                               weir_udf_types_error_t *err) {
    weir_keyed c;
    keyed_begin(&c, key);
    weir_status st = WEIR_OK;
    for (size_t i = 0; i < timers->len && st == WEIR_OK; i++)
        st = weir_on_timer(&c, timers->ptr[i].timestamp, (weir_time_domain)timers->ptr[i].domain);
    host_free(timers->ptr, timers->len);
    return keyed_finish(&c, st, key, ret, err);
}

/* State: the WIT functions take their arguments by pointer and do not keep
 * them, so borrowed bytes are passed as they are. */
static bindings_string_t name_of(const char *name) {
    return (bindings_string_t){(uint8_t *)name, strlen(name)};
}
/* An empty list goes as a null pointer: callers (Zig's allocator, say) may
 * give empty slices a dangling address that the host would refuse. */
static bindings_list_u8_t bytes_of(const void *p, size_t len) {
    return (bindings_list_u8_t){len ? (uint8_t *)p : NULL, len};
}

bool weir_value_get(const char *name, weir_buf *out) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t v;
    if (!weir_udf_keyed_state_value_get(&n, &v)) return false;
    *out = (weir_buf){v.ptr, v.len};
    return true;
}

void weir_value_set(const char *name, const void *value, size_t len) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t v = bytes_of(value, len);
    weir_udf_keyed_state_value_set(&n, &v);
}

bool weir_value_get_i64(const char *name, int64_t *out) {
    weir_buf b;
    if (!weir_value_get(name, &b)) return false;
    bool ok = b.len == sizeof(int64_t);
    if (ok) memcpy(out, b.ptr, sizeof(int64_t));
    weir_buf_free(&b);
    return ok;
}

void weir_value_set_i64(const char *name, int64_t value) { weir_value_set(name, &value, sizeof value); }

void weir_list_free(weir_list *list) {
    for (size_t i = 0; i < list->len; i++) host_free(list->items[i].ptr, list->items[i].len);
    host_free(list->items, list->len);
    list->items = NULL;
    list->len = 0;
}

weir_list weir_list_get(const char *name) {
    bindings_string_t n = name_of(name);
    bindings_list_list_u8_t l;
    weir_udf_keyed_state_list_get(&n, &l);
    /* weir_buf and bindings_list_u8_t have the same layout. */
    return (weir_list){(weir_buf *)l.ptr, l.len};
}

void weir_list_add(const char *name, const void *value, size_t len) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t v = bytes_of(value, len);
    weir_udf_keyed_state_list_add(&n, &v);
}

void weir_list_set(const char *name, const weir_buf *items, size_t len) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t *copy = malloc((len + 1) * sizeof(bindings_list_u8_t));
    for (size_t i = 0; i < len; i++) copy[i] = bytes_of(items[i].ptr, items[i].len);
    bindings_list_list_u8_t l = {len ? copy : NULL, len};
    weir_udf_keyed_state_list_set(&n, &l);
    free(copy);
}

void weir_entries_free(weir_entries *e) {
    for (size_t i = 0; i < e->len; i++) {
        host_free(e->items[i].key.ptr, e->items[i].key.len);
        host_free(e->items[i].value.ptr, e->items[i].value.len);
    }
    host_free(e->items, e->len);
    e->items = NULL;
    e->len = 0;
}

bool weir_map_get(const char *name, const void *key, size_t key_len, weir_buf *out) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t k = bytes_of(key, key_len), v;
    if (!weir_udf_keyed_state_map_get(&n, &k, &v)) return false;
    *out = (weir_buf){v.ptr, v.len};
    return true;
}

void weir_map_put(const char *name, const void *key, size_t key_len, const void *value, size_t len) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t k = bytes_of(key, key_len), v = bytes_of(value, len);
    weir_udf_keyed_state_map_put(&n, &k, &v);
}

void weir_map_remove(const char *name, const void *key, size_t key_len) {
    bindings_string_t n = name_of(name);
    bindings_list_u8_t k = bytes_of(key, key_len);
    weir_udf_keyed_state_map_remove(&n, &k);
}

weir_entries weir_map_entries(const char *name) {
    bindings_string_t n = name_of(name);
    bindings_list_tuple2_list_u8_list_u8_t l;
    weir_udf_keyed_state_map_entries(&n, &l);
    return (weir_entries){(weir_entry *)l.ptr, l.len};
}

void weir_clear(const char *name) {
    bindings_string_t n = name_of(name);
    weir_udf_keyed_state_clear(&n);
}

void weir_register_event_timer(int64_t ts) { weir_udf_timers_register_event_timer(ts); }
void weir_register_processing_timer(int64_t ts) { weir_udf_timers_register_processing_timer(ts); }
void weir_delete_event_timer(int64_t ts) { weir_udf_timers_delete_event_timer(ts); }
void weir_delete_processing_timer(int64_t ts) { weir_udf_timers_delete_processing_timer(ts); }
int64_t weir_current_watermark(void) { return weir_udf_timers_current_watermark(); }
int64_t weir_current_processing_time(void) { return weir_udf_timers_current_processing_time(); }
#endif
