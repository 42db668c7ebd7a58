// Conformance `filter` in JavaScript (udfs/conformance/README.md).
import { filterOperator, OperatorError } from "./weir.js";

export const filter = filterOperator(
  class {
    init(config) {
      this.min = config.int("min", 50);
    }
    keep(record) {
      const amount = parseInt(record.text(), 10);
      if (Number.isNaN(amount)) throw OperatorError.record(`record ${record.index}: value has no amount`);
      return amount >= this.min;
    }
  },
);
