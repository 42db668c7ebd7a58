// Conformance `keyed` in JavaScript (udfs/conformance/README.md): value, list
// and map state, event-time timers and a side output.
import { keyedOperator, ValueState, ListState, MapState, codecs } from "./weir-keyed.js";

export const keyedProcessor = keyedOperator(
  class {
    init() {
      this.total = new ValueState("total", codecs.int64);
      this.amounts = new ListState("amounts", codecs.text);
      this.words = new MapState("words", codecs.text, codecs.text);
    }
    process(ctx, record) {
      const [head, ...words] = record.text().split(" ");
      const amount = parseInt(head, 10);
      const t = record.timestamp;
      const bucket = t - (((t % 10000) + 10000) % 10000) + 9999;

      const total = this.total.get(0) + amount;
      this.total.set(total);
      this.amounts.add(`${bucket}:${amount}`);
      for (const w of words) {
        const key = `${bucket}/${w}`;
        this.words.put(key, String(parseInt(this.words.get(key, "0"), 10) + 1));
      }
      ctx.registerEventTimer(bucket);
      if (amount >= 90) ctx.emit(`big ${amount} total=${total}`, t);
      if (amount < 10) ctx.emitSide("small", `small ${amount}`, t);
    }
    onTimer(ctx, timer) {
      const t = timer.timestamp;
      let prefix = `${t}:`;
      const all = this.amounts.get();
      const mine = all.filter((a) => a.startsWith(prefix)).map((a) => a.slice(prefix.length));
      this.amounts.set(all.filter((a) => !a.startsWith(prefix)));
      prefix = `${t}/`;
      const words = [];
      for (const [key, count] of this.words.entries()) {
        if (!key.startsWith(prefix)) continue;
        words.push(`${key.slice(prefix.length)}:${count}`);
        this.words.remove(key);
      }
      ctx.emit(`bucket ${t} amounts=${mine.join(",")} words=${words.join(",")}`, t);
    }
  },
);
