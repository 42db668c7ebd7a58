"""Enriches projected bids with a price band, in Python.

Input: the JSON of the `bid-projection` operator (`price_eur`, …).
Output: the same JSON plus `"band"`: "low" below `low` euros, "high" at or
above `high`, "mid" in between.

World: `map-operator` (`wit/stateless.wit`); SDK: `guest-sdk/python/weir_udf.py`.
Build: `weir udf build udfs/python/price-band`.
"""

import weir_udf


class PriceBand(weir_udf.Map):
    def init(self, config):
        self.low = config.number("low", 100.0)
        self.high = config.number("high", 10000.0)
        if not self.low < self.high:
            raise weir_udf.OperatorError.config(f"`low` ({self.low}) must be below `high` ({self.high})")

    def map(self, record):
        bid = record.json()
        price = bid.get("price_eur")
        if not isinstance(price, (int, float)):
            raise weir_udf.OperatorError.record(f"record {record.index} has no numeric `price_eur`")
        bid["band"] = "low" if price < self.low else "high" if price >= self.high else "mid"
        return bid


Mapper = weir_udf.map_operator(PriceBand)
