"""Conformance `filter` in Python (udfs/conformance/README.md)."""

import weir_udf


def amount(record):
    head = record.value.split(b" ", 1)[0]
    try:
        return int(head)
    except ValueError:
        raise weir_udf.OperatorError.record(f"record {record.index}: value has no amount")


class MinAmount(weir_udf.Filter):
    def init(self, config):
        self.min = int(config.number("min", 50))

    def keep(self, record):
        return amount(record) >= self.min


Filter = weir_udf.filter_operator(MinAmount)
