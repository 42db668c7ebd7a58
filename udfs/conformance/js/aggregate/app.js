// Conformance `aggregate` in JavaScript (udfs/conformance/README.md).
import { aggregateOperator, codecs } from "./weir.js";

export const aggregator = aggregateOperator(
  class {
    // count, sum, max: three little-endian int64, as in every language.
    static codec = codecs.int64s(3);
    createAccumulator() {
      return [0, 0, 0];
    }
    add([count, sum, max], record) {
      const amount = parseInt(record.text(), 10);
      return [count + 1, sum + amount, Math.max(max, amount)];
    }
    merge(a, b) {
      return [a[0] + b[0], a[1] + b[1], Math.max(a[2], b[2])];
    }
    result([count, sum, max], pane) {
      const key = new TextDecoder().decode(pane.key);
      return `${key} ${pane.start} ${pane.end} count=${count} sum=${sum} max=${max}`;
    }
  },
);
