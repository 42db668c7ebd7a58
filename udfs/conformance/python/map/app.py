"""Conformance `map` in Python (udfs/conformance/README.md)."""

import weir_udf


class Shout(weir_udf.Map):
    def map(self, record):
        head, _, words = record.value.decode().partition(" ")
        return f"{record.key.decode()}|{2 * int(head)}|{words.upper()}"


Mapper = weir_udf.map_operator(Shout)
