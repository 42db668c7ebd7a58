// weir-keyed.js — keyed processing for weir operators in JavaScript: keyed
// state and timers (they exist only in the keyed-process-operator world, so
// they live apart from weir.js).
//
//     import { keyedOperator, ValueState, codecs } from "./weir-keyed.js";
//
//     export const keyedProcessor = keyedOperator(class {
//       init() { this.count = new ValueState("count", codecs.int64); }
//       process(ctx, record) {
//         const n = (this.count.get() ?? 0) + 1;
//         this.count.set(n);
//         ctx.emit(`seen ${n}`, record.timestamp);
//         ctx.registerEventTimer(record.timestamp + 60_000);
//       }
//       onTimer(ctx, timer) { this.count.clear(); }
//     });

import * as state from "weir:udf/keyed-state@0.1.0";
import * as timers from "weir:udf/timers@0.1.0";
import { Record, Rows, codecs, column, create, guard, outputValue, OperatorError } from "./weir.js";

export { codecs, OperatorError, row, Config } from "./weir.js";

/** The keyed call in progress: the current `key`, timers, and emitting. */
export class Context {
  constructor(key) {
    this.key = key;
    this.values = [];
    this.timestamps = [];
    this.outputs = [];
    this.sides = [];
  }
  /** The key as a string. */
  keyText() {
    return new TextDecoder().decode(this.key);
  }
  /** Emits a row (string, bytes or JSON-able) to the main output. */
  emit(value, timestamp) {
    this.values.push(outputValue(value));
    this.timestamps.push(BigInt(timestamp));
    this.outputs.push(0);
  }
  /** Emits a row to the side output `name` (declared in the job file). */
  emitSide(name, value, timestamp) {
    let i = this.sides.indexOf(name);
    if (i < 0) i = this.sides.push(name) - 1;
    this.values.push(outputValue(value));
    this.timestamps.push(BigInt(timestamp));
    this.outputs.push(i + 1);
  }
  registerEventTimer(t) {
    timers.registerEventTimer(BigInt(t));
  }
  registerProcessingTimer(t) {
    timers.registerProcessingTimer(BigInt(t));
  }
  deleteEventTimer(t) {
    timers.deleteEventTimer(BigInt(t));
  }
  deleteProcessingTimer(t) {
    timers.deleteProcessingTimer(BigInt(t));
  }
  currentWatermark() {
    return Number(timers.currentWatermark());
  }
  currentProcessingTime() {
    return Number(timers.currentProcessingTime());
  }
  emitted() {
    return {
      values: column(this.values),
      timestamps: BigInt64Array.from(this.timestamps),
      outputs: this.sides.length ? Uint8Array.from(this.outputs) : new Uint8Array(0),
      sideOutputs: this.sides,
    };
  }
}

/** One value per key, held by the host. */
export class ValueState {
  constructor(name, codec = codecs.json) {
    this.name = name;
    this.codec = codec;
  }
  get(dflt = undefined) {
    const v = state.valueGet(this.name);
    return v === undefined || v === null ? dflt : this.codec.decode(v);
  }
  set(value) {
    state.valueSet(this.name, this.codec.encode(value));
  }
  clear() {
    state.clear(this.name);
  }
}

/** A list per key, held by the host. */
export class ListState {
  constructor(name, codec = codecs.json) {
    this.name = name;
    this.codec = codec;
  }
  get() {
    return state.listGet(this.name).map((v) => this.codec.decode(v));
  }
  add(value) {
    state.listAdd(this.name, this.codec.encode(value));
  }
  set(values) {
    state.listSet(this.name, values.map((v) => this.codec.encode(v)));
  }
  clear() {
    state.clear(this.name);
  }
}

/** A map per key, held by the host; `entries()` is ordered by key bytes. */
export class MapState {
  constructor(name, keyCodec = codecs.text, valueCodec = codecs.json) {
    this.name = name;
    this.keyCodec = keyCodec;
    this.codec = valueCodec;
  }
  get(key, dflt = undefined) {
    const v = state.mapGet(this.name, this.keyCodec.encode(key));
    return v === undefined || v === null ? dflt : this.codec.decode(v);
  }
  put(key, value) {
    state.mapPut(this.name, this.keyCodec.encode(key), this.codec.encode(value));
  }
  remove(key) {
    state.mapRemove(this.name, this.keyCodec.encode(key));
  }
  entries() {
    return state.mapEntries(this.name).map(([k, v]) => [this.keyCodec.decode(k), this.codec.decode(v)]);
  }
  clear() {
    state.clear(this.name);
  }
}

/** Exports a keyed process class: `export const keyedProcessor = keyedOperator(C)`. */
export function keyedOperator(cls) {
  let op;
  return {
    init(config) {
      op = create(cls, config);
    },
    process(key, records) {
      return guard(() => {
        const ctx = new Context(key);
        const rows = new Rows(records);
        for (let i = 0, n = rows.length; i < n; i++) op.process(ctx, new Record(rows, i));
        return ctx.emitted();
      });
    },
    onTimer(key, fired) {
      return guard(() => {
        const ctx = new Context(key);
        for (const t of fired) {
          if (!op.onTimer) throw new OperatorError(`a timer fired at ${t.timestamp} but the operator has no onTimer`);
          op.onTimer(ctx, { timestamp: Number(t.timestamp), domain: t.domain });
        }
        return ctx.emitted();
      });
    },
  };
}
