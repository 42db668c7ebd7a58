// Conformance `flat-map` in JavaScript (udfs/conformance/README.md).
import { flatMapOperator, row } from "./weir.js";

export const flatMapper = flatMapOperator(
  class {
    *flatMap(record) {
      const words = record.text().split(" ").slice(1);
      for (let i = 0; i < words.length; i++) {
        yield row(words[i], { key: words[i], timestamp: record.timestamp + i });
      }
    }
  },
);
