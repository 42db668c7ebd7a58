"""Conformance `flat-map` in Python (udfs/conformance/README.md)."""

import weir_udf


class Words(weir_udf.FlatMap):
    def flat_map(self, record):
        for i, word in enumerate(record.value.split(b" ")[1:]):
            yield weir_udf.Row(word, key=word, timestamp=record.timestamp + i)


FlatMapper = weir_udf.flat_map_operator(Words)
