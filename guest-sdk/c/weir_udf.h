/*
 * weir_udf.h — write weir stream operators in C.
 *
 * A weir operator is a WebAssembly component implementing one world of the
 * `weir:udf` WIT package (wit/ in the weir repository). This SDK hides the raw
 * bindings: you write one function per record (and, for windows and keyed
 * processing, per pane or timer); the SDK turns the host's columnar batches
 * into records, your results back into columns, and your errors into the
 * WIT `error` variant.
 *
 *     #include "weir_udf.h"
 *
 *     static int64_t min_amount;
 *
 *     weir_status weir_init(const weir_config *config) {
 *         return weir_config_int(config, "min", 50, &min_amount);
 *     }
 *
 *     weir_status weir_filter(const weir_record *record, bool *keep) {
 *         *keep = record->value.len > 0;
 *         return WEIR_OK;
 *     }
 *
 * Build with `weir udf build DIR` (udf.toml: `language = "c"`); the build
 * compiles every .c file of DIR with this SDK for the world udf.toml names,
 * with zig's C compiler for wasm32-wasi.
 *
 * Which functions you define depends on the world:
 *   filter-operator          weir_filter
 *   map-operator             weir_map
 *   flat-map-operator        weir_flat_map
 *   aggregate-operator       WEIR_ACCUMULATOR(type), weir_create_accumulator,
 *                            weir_add, weir_merge, weir_get_result
 *   keyed-process-operator   weir_process, weir_on_timer (optional)
 * and, in every world, optionally weir_init.
 *
 * Memory: every pointer the SDK gives you (record fields, keys, state
 * buffers it does not say you own) is valid for the duration of the call
 * only. Buffers you own (weir_buf, weir_list, weir_entries) are freed with
 * their _free function.
 */
#ifndef WEIR_UDF_H
#define WEIR_UDF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results and errors ------------------------------------------------ */

/* What every callback returns: WEIR_OK, or the value of weir_error(). */
typedef int weir_status;
#define WEIR_OK 0
#define WEIR_ERROR (-1)

/* Why an operator call failed (the WIT `error` variant). */
typedef enum weir_error_kind {
    /* The configuration is unusable; name the offending key. */
    WEIR_INVALID_CONFIG = 0,
    /* A record cannot be processed; say which and why. */
    WEIR_INVALID_RECORD = 1,
    /* Anything else. */
    WEIR_FAILED = 2,
} weir_error_kind;

/* Records an error (printf-style message) and returns WEIR_ERROR:
 * `return weir_error(WEIR_INVALID_RECORD, "record %zu: no amount", r->index);`
 * The job fails with this message (and restarts from its last checkpoint). */
weir_status weir_error(weir_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- bytes and records ------------------------------------------------- */

/* Borrowed bytes: valid for the duration of the call. */
typedef struct weir_bytes {
    const uint8_t *ptr;
    size_t len;
} weir_bytes;

/* Owned bytes, from the state API: free with weir_buf_free. */
typedef struct weir_buf {
    uint8_t *ptr;
    size_t len;
} weir_buf;
void weir_buf_free(weir_buf *buf);

/* True if `b` holds exactly the NUL-terminated string `s`. */
bool weir_bytes_eq(weir_bytes b, const char *s);

/* Parses the decimal integer at the start of `b` (an optional '-' then
 * digits); `used`, if not NULL, gets how many bytes it took. False if `b`
 * does not start with a number. */
bool weir_parse_i64(weir_bytes b, int64_t *out, size_t *used);

/* One input record. */
typedef struct weir_record {
    /* Row of the record in its batch. */
    size_t index;
    /* Key (empty if the record has none) and value. */
    weir_bytes key;
    weir_bytes value;
    /* Event time, ms since the Unix epoch. */
    int64_t timestamp;
    /* Internal: the batch, for weir_record_header. */
    const void *batch_;
} weir_record;

/* The value of the first header named `name`; false if there is none. */
bool weir_record_header(const weir_record *record, const char *name, weir_bytes *value);

/* ---- configuration ----------------------------------------------------- */

/* The operator's `config` table from the job file, as strings. */
typedef struct weir_config weir_config;

/* The raw string of `key`, or NULL. Valid during weir_init only. */
const char *weir_config_get(const weir_config *config, const char *key);
/* `key` as an integer into *out, or `dflt`; a bad value is an
 * WEIR_INVALID_CONFIG error naming the key. */
weir_status weir_config_int(const weir_config *config, const char *key, int64_t dflt, int64_t *out);

/* ---- output (map, flat-map, window results) ----------------------------- */

typedef struct weir_output weir_output;

/* Emits a row with this value; it keeps the key, timestamp and headers of
 * the record (or pane) being processed unless set below. */
void weir_emit(weir_output *out, const void *value, size_t len);
void weir_emit_str(weir_output *out, const char *value);
void weir_emitf(weir_output *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the key / event time of the row emitted last. */
void weir_set_key(weir_output *out, const void *key, size_t len);
void weir_set_timestamp(weir_output *out, int64_t timestamp);

/* ---- logging ----------------------------------------------------------- */

typedef enum weir_log_level {
    WEIR_TRACE = 0,
    WEIR_DEBUG = 1,
    WEIR_INFO = 2,
    WEIR_WARN = 3,
    WEIR_LOG_ERROR = 4,
} weir_log_level;

/* Writes to the host's log, tagged with job, operator and subtask. */
void weir_log(weir_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- your functions: every world ---------------------------------------- */

/* Called once per instance with the operator's configuration. Optional. */
weir_status weir_init(const weir_config *config);

/* filter-operator: set *keep. */
weir_status weir_filter(const weir_record *record, bool *keep);

/* map-operator: emit exactly one row. */
weir_status weir_map(const weir_record *record, weir_output *out);

/* flat-map-operator: emit zero or more rows. */
weir_status weir_flat_map(const weir_record *record, weir_output *out);

/* ---- aggregate-operator ------------------------------------------------- */

/* Declares the accumulator type: a plain struct, stored by the host as its
 * bytes (so keep it free of pointers). Write once at file scope. */
#define WEIR_ACCUMULATOR(type) const size_t weir_accumulator_size = sizeof(type)
extern const size_t weir_accumulator_size;

/* A fired pane: one window of one key. */
typedef struct weir_pane {
    weir_bytes key;
    int64_t start;
    int64_t end;
} weir_pane;

/* The accumulator of an empty pane (the SDK zeroes it first). */
weir_status weir_create_accumulator(void *acc);
/* Folds one record into an accumulator. */
weir_status weir_add(void *acc, const weir_record *record);
/* Merges `other` into `acc` (session windows). */
weir_status weir_merge(void *acc, const void *other);
/* Emits the pane's result rows (key: the pane's; time: its last ms). */
weir_status weir_get_result(const void *acc, const weir_pane *pane, weir_output *out);

/* ---- keyed-process-operator --------------------------------------------- */

/* The call in progress: its key, and what it emits. */
typedef struct weir_keyed weir_keyed;

typedef enum weir_time_domain {
    WEIR_EVENT_TIME = 0,
    WEIR_PROCESSING_TIME = 1,
} weir_time_domain;

/* Called for every record of a key, in arrival order. */
weir_status weir_process(weir_keyed *ctx, const weir_record *record);
/* Called for every timer of a key that fired, in timestamp order. Optional. */
weir_status weir_on_timer(weir_keyed *ctx, int64_t timestamp, weir_time_domain domain);

/* The current key. */
weir_bytes weir_current_key(const weir_keyed *ctx);
/* Emits a row to the main output / the side output `name` (as declared in
 * the job file), carrying the current key. */
void weir_keyed_emit(weir_keyed *ctx, const void *value, size_t len, int64_t timestamp);
void weir_keyed_emitf(weir_keyed *ctx, int64_t timestamp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void weir_keyed_emit_side(weir_keyed *ctx, const char *name, const void *value, size_t len,
                          int64_t timestamp);

/* Keyed state of the current key, held by the host (checkpointed with the
 * job). A name belongs to one kind of state. */
bool weir_value_get(const char *name, weir_buf *out);
void weir_value_set(const char *name, const void *value, size_t len);
/* Value state holding a little-endian int64. */
bool weir_value_get_i64(const char *name, int64_t *out);
void weir_value_set_i64(const char *name, int64_t value);

typedef struct weir_list {
    weir_buf *items;
    size_t len;
} weir_list;
void weir_list_free(weir_list *list);
weir_list weir_list_get(const char *name);
void weir_list_add(const char *name, const void *value, size_t len);
/* Replaces the elements (an empty list clears it). */
void weir_list_set(const char *name, const weir_buf *items, size_t len);

typedef struct weir_entry {
    weir_buf key;
    weir_buf value;
} weir_entry;
typedef struct weir_entries {
    weir_entry *items;
    size_t len;
} weir_entries;
void weir_entries_free(weir_entries *entries);
bool weir_map_get(const char *name, const void *key, size_t key_len, weir_buf *out);
void weir_map_put(const char *name, const void *key, size_t key_len, const void *value,
                  size_t len);
void weir_map_remove(const char *name, const void *key, size_t key_len);
/* All entries, ordered by key bytes. */
weir_entries weir_map_entries(const char *name);

/* Clears state `name` (any kind) of the current key. */
void weir_clear(const char *name);

/* Timers of the current key: on_timer runs once the watermark (event time)
 * or the clock (processing time) reaches `timestamp`. */
void weir_register_event_timer(int64_t timestamp);
void weir_register_processing_timer(int64_t timestamp);
void weir_delete_event_timer(int64_t timestamp);
void weir_delete_processing_timer(int64_t timestamp);
int64_t weir_current_watermark(void);
int64_t weir_current_processing_time(void);

#ifdef __cplusplus
}
#endif
#endif /* WEIR_UDF_H */
