// Conformance `filter` in C (udfs/conformance/README.md).
#include "weir_udf.h"

static int64_t min_amount;

weir_status weir_init(const weir_config *config) {
    return weir_config_int(config, "min", 50, &min_amount);
}

weir_status weir_filter(const weir_record *record, bool *keep) {
    int64_t amount;
    if (!weir_parse_i64(record->value, &amount, NULL))
        return weir_error(WEIR_INVALID_RECORD, "record %zu: value does not start with an amount", record->index);
    *keep = amount >= min_amount;
    return WEIR_OK;
}
