"""Conformance `aggregate` in Python (udfs/conformance/README.md)."""

import weir_udf


class Stats(weir_udf.Aggregate):
    # count, sum, max: three little-endian int64, as in every language.
    codec = weir_udf.StructCodec("<qqq")

    def create_accumulator(self):
        return (0, 0, 0)

    def add(self, acc, record):
        amount = int(record.value.split(b" ", 1)[0])
        return (acc[0] + 1, acc[1] + amount, max(acc[2], amount))

    def merge(self, acc, other):
        return (acc[0] + other[0], acc[1] + other[1], max(acc[2], other[2]))

    def result(self, acc, pane):
        return f"{pane.key.decode()} {pane.start} {pane.end} count={acc[0]} sum={acc[1]} max={acc[2]}"


Aggregator = weir_udf.aggregate_operator(Stats)
