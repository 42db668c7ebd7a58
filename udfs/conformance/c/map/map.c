// Conformance `map` in C (udfs/conformance/README.md).
#include <ctype.h>
#include <stdlib.h>

#include "weir_udf.h"

weir_status weir_map(const weir_record *record, weir_output *out) {
    int64_t amount;
    size_t used;
    if (!weir_parse_i64(record->value, &amount, &used))
        return weir_error(WEIR_INVALID_RECORD, "record %zu: value does not start with an amount", record->index);
    size_t start = used < record->value.len ? used + 1 : used; /* skip the space */
    size_t n = record->value.len - start;
    char *words = malloc(n + 1);
    for (size_t i = 0; i < n; i++) words[i] = (char)toupper(record->value.ptr[start + i]);
    weir_emitf(out, "%.*s|%lld|%.*s", (int)record->key.len, (const char *)record->key.ptr,
               (long long)(2 * amount), (int)n, words);
    free(words);
    return WEIR_OK;
}
