// weir.js — write weir stream operators in JavaScript.
//
// A weir operator is a WebAssembly component implementing one world of the
// `weir:udf` WIT package; componentize-js builds it from an ES module. This
// SDK hides the raw bindings: write a class with one method per record (and
// per pane or timer) and export it under the name of the world's interface:
//
//     import { filterOperator } from "./weir.js";
//
//     export const filter = filterOperator(class {
//       init(config) { this.min = config.int("min", 50); }
//       keep(record) { return record.text().length >= this.min; }
//     });
//
// | world                  | export                                   | methods                                        |
// |------------------------|------------------------------------------|------------------------------------------------|
// | filter-operator        | `filter = filterOperator(C)`             | `keep(record)` → boolean                        |
// | map-operator           | `mapper = mapOperator(C)`                | `map(record)` → output                          |
// | flat-map-operator      | `flatMapper = flatMapOperator(C)`        | `flatMap(record)` → iterable of outputs         |
// | aggregate-operator     | `aggregator = aggregateOperator(C)`      | `createAccumulator()`, `add(acc, record)` → acc, `merge(a, b)` → acc, `result(acc, pane)` → output |
// | keyed-process-operator | `keyedProcessor = keyedOperator(C)` (from `./weir-keyed.js`) | `process(ctx, record)`, `onTimer(ctx, timer)` |
//
// Every class may have `init(config)`. An output is a string, a Uint8Array,
// a JSON-able value, or `row(value, { key, timestamp })`. Throw
// `new OperatorError(message, kind)` (kind "invalid-config",
// "invalid-record" or "failed") to fail with a message; any other exception
// fails the job with its message.
//
// Build with `weir udf build DIR` (udf.toml: `language = "js"`).

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why an operator call failed. */
export class OperatorError extends Error {
  constructor(message, kind = "failed") {
    super(message);
    this.kind = kind;
  }
  static config(message) {
    return new OperatorError(message, "invalid-config");
  }
  static record(message) {
    return new OperatorError(message, "invalid-record");
  }
}

/** The WIT `error` for a thrown exception. */
export function witError(e) {
  if (e instanceof OperatorError) return { tag: e.kind, val: e.message };
  return { tag: "failed", val: `${e && e.name ? e.name : "Error"}: ${e && e.message ? e.message : e}` };
}

/** Runs `f`, turning what it throws into the WIT error. */
export function guard(f) {
  try {
    return f();
  } catch (e) {
    throw witError(e);
  }
}

/** The operator's `config` table from the job file, as strings. */
export class Config {
  constructor(pairs) {
    this.pairs = new Map(pairs);
  }
  /** The raw string of `key`, or `dflt`. */
  get(key, dflt = undefined) {
    return this.pairs.has(key) ? this.pairs.get(key) : dflt;
  }
  /** `key` as a number, or `dflt`; a bad value is a config error. */
  number(key, dflt) {
    if (!this.pairs.has(key)) return dflt;
    const raw = this.pairs.get(key);
    const v = Number(raw);
    if (raw.trim() === "" || Number.isNaN(v)) throw OperatorError.config(`\`${key}\` = "${raw}" is not a number`);
    return v;
  }
  /** `key` as an integer, or `dflt`. */
  int(key, dflt) {
    const v = this.number(key, dflt);
    if (!Number.isInteger(v)) throw OperatorError.config(`\`${key}\` = ${v} is not an integer`);
    return v;
  }
}

function slice(col, i) {
  return col.data.subarray(col.offsets[i], col.offsets[i + 1]);
}

/** One input record: `key`, `value` (Uint8Array), `timestamp` (ms, a Number). */
export class Record {
  constructor(batch, index) {
    this.batch = batch;
    this.index = index;
    this.key = slice(batch.keys, index);
    this.value = slice(batch.values, index);
    this.timestamp = Number(batch.timestamps[index]);
  }
  /** The key as a string. */
  keyText() {
    return decoder.decode(this.key);
  }
  /** The value as a string. */
  text() {
    return decoder.decode(this.value);
  }
  /** The value parsed as JSON. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw OperatorError.record(`record ${this.index}: value is not JSON: ${e.message}`);
    }
  }
  /** The value of the first header called `name` (a Uint8Array), if any. */
  header(name) {
    const h = this.batch.headers;
    if (h.rowOffsets.length === 0) return undefined;
    for (let e = h.rowOffsets[this.index]; e < h.rowOffsets[this.index + 1]; e++) {
      if (decoder.decode(slice(h.names, e)) === name) return slice(h.values, e);
    }
    return undefined;
  }
}

/** An output row with a new key and/or timestamp. */
export function row(value, { key, timestamp } = {}) {
  return new Row(value, key, timestamp);
}

class Row {
  constructor(value, key, timestamp) {
    this.value = value;
    this.key = key;
    this.timestamp = timestamp;
  }
}

export function asBytes(v) {
  if (v instanceof Uint8Array) return v;
  if (typeof v === "string") return encoder.encode(v);
  return encoder.encode(JSON.stringify(v));
}

/** Builds a `bytes-column` from byte arrays: one buffer, one copy. */
export function column(parts) {
  let total = 0;
  const offsets = new Uint32Array(parts.length + 1);
  for (let i = 0; i < parts.length; i++) {
    total += parts[i].length;
    offsets[i + 1] = total;
  }
  const data = new Uint8Array(total);
  for (let i = 0; i < parts.length; i++) data.set(parts[i], offsets[i]);
  return { data, offsets };
}

/** Collects output rows for a WIT `output`. Keys and timestamps are
 * collected only once a row sets one: until then every row keeps its
 * parent's, which then never cross the boundary again. */
export class Output {
  constructor(parentKey, parentTimestamp) {
    this.parentKey = parentKey;
    this.parentTimestamp = parentTimestamp;
    this.parents = [];
    this.values = [];
    this.keys = null;
    this.timestamps = null;
  }
  add(parent, out) {
    const r = out instanceof Row ? out : new Row(out);
    this.parents.push(parent);
    this.values.push(asBytes(r.value));
    if (r.key !== undefined && this.keys === null) this.keys = this.parents.slice(0, -1).map(this.parentKey);
    if (this.keys !== null) this.keys.push(r.key === undefined ? this.parentKey(parent) : asBytes(r.key));
    if (r.timestamp !== undefined && this.timestamps === null)
      this.timestamps = this.parents.slice(0, -1).map(this.parentTimestamp);
    if (this.timestamps !== null)
      this.timestamps.push(r.timestamp === undefined ? this.parentTimestamp(parent) : BigInt(r.timestamp));
  }
  finish(dense) {
    return {
      parents: dense ? new Uint32Array(0) : Uint32Array.from(this.parents),
      values: column(this.values),
      keys: this.keys === null ? undefined : column(this.keys),
      timestamps: this.timestamps === null ? undefined : BigInt64Array.from(this.timestamps),
      headers: undefined,
    };
  }
}

function rows(batch) {
  return batch.timestamps.length;
}

function batchOutput(batch) {
  return new Output(
    (p) => slice(batch.keys, p),
    (p) => batch.timestamps[p],
  );
}

/** A new operator of class `cls`, initialised with the WIT config. */
export function create(cls, config) {
  return guard(() => {
    const op = new cls();
    if (op.init) op.init(new Config(config));
    return op;
  });
}

/** Exports a filter class (`keep(record)`): `export const filter = filterOperator(C)`. */
export function filterOperator(cls) {
  let op;
  return {
    init(config) {
      op = create(cls, config);
    },
    filter(batch) {
      return guard(() => {
        const keep = [];
        for (let i = 0, n = rows(batch); i < n; i++) if (op.keep(new Record(batch, i))) keep.push(i);
        return Uint32Array.from(keep);
      });
    },
  };
}

/** Exports a map class (`map(record)`): `export const mapper = mapOperator(C)`. */
export function mapOperator(cls) {
  let op;
  return {
    init(config) {
      op = create(cls, config);
    },
    mapBatch(batch) {
      return guard(() => {
        const out = batchOutput(batch);
        for (let i = 0, n = rows(batch); i < n; i++) out.add(i, op.map(new Record(batch, i)));
        return out.finish(true);
      });
    },
  };
}

/** Exports a flat-map class (`flatMap(record)` → iterable): `export const flatMapper = flatMapOperator(C)`. */
export function flatMapOperator(cls) {
  let op;
  return {
    init(config) {
      op = create(cls, config);
    },
    flatMapBatch(batch) {
      return guard(() => {
        const out = batchOutput(batch);
        for (let i = 0, n = rows(batch); i < n; i++) {
          for (const o of op.flatMap(new Record(batch, i)) || []) out.add(i, o);
        }
        return out.finish(false);
      });
    },
  };
}

/** Accumulator codecs: how accumulators and state values become bytes. */
export const codecs = {
  /** JSON text (the default). */
  json: {
    encode: (v) => encoder.encode(JSON.stringify(v)),
    decode: (b) => JSON.parse(decoder.decode(b)),
  },
  /** Strings as UTF-8. */
  text: {
    encode: (v) => encoder.encode(v),
    decode: (b) => decoder.decode(b),
  },
  /** Bytes as they are. */
  bytes: { encode: (v) => v, decode: (b) => b },
  /** A Number as a little-endian int64. */
  int64: {
    encode: (v) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, BigInt(v), true);
      return b;
    },
    decode: (b) => Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigInt64(0, true)),
  },
  /** An array of `n` Numbers as little-endian int64s (the layout C, Zig or Rust store). */
  int64s(n) {
    return {
      encode: (v) => {
        const b = new Uint8Array(8 * n);
        const d = new DataView(b.buffer);
        for (let i = 0; i < n; i++) d.setBigInt64(8 * i, BigInt(v[i]), true);
        return b;
      },
      decode: (b) => {
        if (b.length !== 8 * n) throw new OperatorError(`stored value has ${b.length} bytes, expected ${8 * n}`);
        const d = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const v = [];
        for (let i = 0; i < n; i++) v.push(Number(d.getBigInt64(8 * i, true)));
        return v;
      },
    };
  },
};

/**
 * Exports an aggregate class: `export const aggregator = aggregateOperator(C)`.
 * `C.codec` (a static field; `codecs.json` by default) stores its accumulators.
 */
export function aggregateOperator(cls) {
  let op;
  const codec = cls.codec || codecs.json;
  return {
    init(config) {
      op = create(cls, config);
    },
    createAccumulator() {
      return guard(() => codec.encode(op.createAccumulator()));
    },
    add(accumulators, groups, records) {
      return guard(() => {
        const accs = [];
        for (let i = 0; i + 1 < accumulators.offsets.length; i++) accs.push(codec.decode(slice(accumulators, i)));
        for (let r = 0, n = rows(records); r < n; r++) {
          const g = groups[r];
          accs[g] = op.add(accs[g], new Record(records, r));
        }
        return column(accs.map(codec.encode));
      });
    },
    merge(accumulators, groups) {
      return guard(() => {
        const merged = [];
        for (let i = 0; i < groups.length; i++) {
          const v = codec.decode(slice(accumulators, i));
          const g = groups[i];
          merged[g] = merged[g] === undefined ? v : op.merge(merged[g], v);
        }
        return column(merged.map(codec.encode));
      });
    },
    getResults(panes) {
      return guard(() => {
        const out = new Output(
          (p) => panes[p].key,
          (p) => panes[p].window.end - 1n,
        );
        panes.forEach((p, i) => {
          const pane = { key: p.key, start: Number(p.window.start), end: Number(p.window.end) };
          const r = op.result(codec.decode(p.accumulator), pane);
          for (const o of Array.isArray(r) ? r : [r]) out.add(i, o);
        });
        return out.finish(false);
      });
    },
  };
}
