"""Conformance `keyed` in Python (udfs/conformance/README.md): value, list and
map state, event-time timers and a side output."""

import weir_udf
from weir_udf import Int64Codec, TextCodec


class Buckets(weir_udf.KeyedProcess):
    def init(self, config):
        self.total = weir_udf.ValueState("total", Int64Codec)
        self.amounts = weir_udf.ListState("amounts", TextCodec)
        self.words = weir_udf.MapState("words", TextCodec, TextCodec)

    def process(self, ctx, record):
        head, *words = record.value.decode().split(" ")
        amount, t = int(head), record.timestamp
        bucket = t - t % 10_000 + 9_999

        total = self.total.get(0) + amount
        self.total.set(total)
        self.amounts.add(f"{bucket}:{amount}")
        for w in words:
            key = f"{bucket}/{w}"
            self.words.put(key, str(int(self.words.get(key, "0")) + 1))

        ctx.register_event_timer(bucket)
        if amount >= 90:
            ctx.emit(f"big {amount} total={total}", t)
        if amount < 10:
            ctx.emit_side("small", f"small {amount}", t)

    def on_timer(self, ctx, timer):
        t = timer.timestamp
        prefix = f"{t}:"
        all_amounts = self.amounts.get()
        mine = [a[len(prefix):] for a in all_amounts if a.startswith(prefix)]
        self.amounts.set([a for a in all_amounts if not a.startswith(prefix)])
        prefix = f"{t}/"
        words = []
        for key, count in self.words.entries():
            if key.startswith(prefix):
                words.append(f"{key[len(prefix):]}:{count}")
                self.words.remove(key)
        ctx.emit(f"bucket {t} amounts={','.join(mine)} words={','.join(words)}", t)


KeyedProcessor = weir_udf.keyed_operator(Buckets)
