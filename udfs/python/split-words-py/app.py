"""Splits text into words, in Python: the twin of the Rust `split-words`.

One output record per word of the input's `field` (default `text`), keyed by
the lower-cased word, value `{"word": …}`; words shorter than `min_len` are
dropped. The tests check that both languages give identical output.

World: `flat-map-operator` (`wit/stateless.wit`); SDK: `guest-sdk/python/weir_udf.py`.
Build: `weir udf build udfs/python/split-words-py`.
"""

import json
import re

import weir_udf

# Rust's `char::is_alphanumeric` splits on everything else; so does this.
_NOT_WORD = re.compile(r"[\W_]+")


class SplitWords(weir_udf.FlatMap):
    def init(self, config):
        self.field = config.get("field", "text")
        self.min_len = int(config.number("min_len", 1))

    def flat_map(self, record):
        doc = record.json()
        text = doc.get(self.field)
        if not isinstance(text, str):
            raise weir_udf.OperatorError.record(
                f"record {record.index} has no string field `{self.field}`")
        for word in _NOT_WORD.split(text):
            if len(word) >= self.min_len:
                lower = word.lower()
                yield weir_udf.Row(json.dumps({"word": lower}, separators=(",", ":")), key=lower)


FlatMapper = weir_udf.flat_map_operator(SplitWords)
