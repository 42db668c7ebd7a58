// Conformance `keyed` in C (udfs/conformance/README.md): value, list and map
// state, event-time timers and a side output.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir_udf.h"

weir_status weir_process(weir_keyed *ctx, const weir_record *record) {
    int64_t amount;
    size_t used;
    if (!weir_parse_i64(record->value, &amount, &used))
        return weir_error(WEIR_INVALID_RECORD, "record %zu: value does not start with an amount", record->index);
    int64_t t = record->timestamp;
    int64_t bucket = t - ((t % 10000) + 10000) % 10000 + 9999;

    int64_t total = 0;
    weir_value_get_i64("total", &total);
    total += amount;
    weir_value_set_i64("total", total);

    char entry[64];
    int n = snprintf(entry, sizeof entry, "%lld:%lld", (long long)bucket, (long long)amount);
    weir_list_add("amounts", entry, (size_t)n);

    const uint8_t *v = record->value.ptr;
    size_t i = used;
    while (i < record->value.len) {
        size_t start = ++i;
        while (i < record->value.len && v[i] != ' ') i++;
        char key[256];
        int k = snprintf(key, sizeof key, "%lld/%.*s", (long long)bucket, (int)(i - start), (const char *)v + start);
        weir_buf old;
        int64_t count = 0;
        if (weir_map_get("words", key, (size_t)k, &old)) {
            weir_parse_i64((weir_bytes){old.ptr, old.len}, &count, NULL);
            weir_buf_free(&old);
        }
        char text[24];
        int c = snprintf(text, sizeof text, "%lld", (long long)(count + 1));
        weir_map_put("words", key, (size_t)k, text, (size_t)c);
    }

    weir_register_event_timer(bucket);
    if (amount >= 90) weir_keyed_emitf(ctx, t, "big %lld total=%lld", (long long)amount, (long long)total);
    if (amount < 10) {
        char small[32];
        int s = snprintf(small, sizeof small, "small %lld", (long long)amount);
        weir_keyed_emit_side(ctx, "small", small, (size_t)s, t);
    }
    return WEIR_OK;
}

static void append(char **buf, size_t *len, const void *data, size_t n) {
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
}

weir_status weir_on_timer(weir_keyed *ctx, int64_t timestamp, weir_time_domain domain) {
    (void)domain;
    char prefix[32];
    size_t plen = (size_t)snprintf(prefix, sizeof prefix, "%lld:", (long long)timestamp);

    char *out = NULL;
    size_t len = 0;
    char head[64];
    append(&out, &len, head, (size_t)snprintf(head, sizeof head, "bucket %lld amounts=", (long long)timestamp));

    weir_list amounts = weir_list_get("amounts");
    weir_buf *rest = malloc((amounts.len + 1) * sizeof(weir_buf));
    size_t kept = 0, mine = 0;
    for (size_t i = 0; i < amounts.len; i++) {
        weir_buf a = amounts.items[i];
        if (a.len >= plen && memcmp(a.ptr, prefix, plen) == 0) {
            if (mine++) append(&out, &len, ",", 1);
            append(&out, &len, a.ptr + plen, a.len - plen);
        } else {
            rest[kept++] = a;
        }
    }
    weir_list_set("amounts", rest, kept);
    free(rest);
    weir_list_free(&amounts);

    append(&out, &len, " words=", 7);
    prefix[plen - 1] = '/';
    weir_entries words = weir_map_entries("words");
    size_t seen = 0;
    for (size_t i = 0; i < words.len; i++) {
        weir_entry e = words.items[i];
        if (e.key.len < plen || memcmp(e.key.ptr, prefix, plen) != 0) continue;
        if (seen++) append(&out, &len, ",", 1);
        append(&out, &len, e.key.ptr + plen, e.key.len - plen);
        append(&out, &len, ":", 1);
        append(&out, &len, e.value.ptr, e.value.len);
        weir_map_remove("words", e.key.ptr, e.key.len);
    }
    weir_entries_free(&words);

    weir_keyed_emit(ctx, out, len, timestamp);
    free(out);
    return WEIR_OK;
}
