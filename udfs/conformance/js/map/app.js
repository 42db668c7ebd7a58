// Conformance `map` in JavaScript (udfs/conformance/README.md).
import { mapOperator } from "./weir.js";

export const mapper = mapOperator(
  class {
    map(record) {
      const text = record.text();
      const space = text.indexOf(" ");
      const amount = parseInt(space < 0 ? text : text.slice(0, space), 10);
      const words = space < 0 ? "" : text.slice(space + 1);
      return `${record.keyText()}|${2 * amount}|${words.toUpperCase()}`;
    }
  },
);
