// Conformance `aggregate` in C (udfs/conformance/README.md).
#include "weir_udf.h"

typedef struct stats {
    int64_t count, sum, max;
} stats;

WEIR_ACCUMULATOR(stats);

weir_status weir_create_accumulator(void *acc) {
    (void)acc; /* zeroed by the SDK: count 0, sum 0, max 0 */
    return WEIR_OK;
}

weir_status weir_add(void *acc, const weir_record *record) {
    stats *s = acc;
    int64_t amount;
    if (!weir_parse_i64(record->value, &amount, NULL))
        return weir_error(WEIR_INVALID_RECORD, "record %zu: value does not start with an amount", record->index);
    s->count += 1;
    s->sum += amount;
    if (amount > s->max) s->max = amount;
    return WEIR_OK;
}

weir_status weir_merge(void *acc, const void *other) {
    stats *s = acc;
    const stats *o = other;
    s->count += o->count;
    s->sum += o->sum;
    if (o->max > s->max) s->max = o->max;
    return WEIR_OK;
}

weir_status weir_get_result(const void *acc, const weir_pane *pane, weir_output *out) {
    const stats *s = acc;
    weir_emitf(out, "%.*s %lld %lld count=%lld sum=%lld max=%lld", (int)pane->key.len,
               (const char *)pane->key.ptr, (long long)pane->start, (long long)pane->end,
               (long long)s->count, (long long)s->sum, (long long)s->max);
    return WEIR_OK;
}
