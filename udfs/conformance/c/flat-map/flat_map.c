// Conformance `flat-map` in C (udfs/conformance/README.md).
#include "weir_udf.h"

weir_status weir_flat_map(const weir_record *record, weir_output *out) {
    const uint8_t *v = record->value.ptr;
    size_t len = record->value.len, i = 0;
    while (i < len && v[i] != ' ') i++; /* the amount */
    int64_t n = 0;
    while (i < len) {
        size_t start = ++i;
        while (i < len && v[i] != ' ') i++;
        weir_emit(out, v + start, i - start);
        weir_set_key(out, v + start, i - start);
        weir_set_timestamp(out, record->timestamp + n++);
    }
    return WEIR_OK;
}
