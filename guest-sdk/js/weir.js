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

/**
 * A `bytes-column` read as text. The interpreter pays per call into the
 * engine, so the whole buffer is decoded once, on first use; when it is
 * ASCII (the decoded text is as long as the bytes and has no replacement
 * character), a row's text is a slice of it. Otherwise rows are decoded one
 * by one, as UTF-8 with replacement, which gives the same strings.
 */
class TextColumn {
  constructor(col) {
    this.col = col;
    this.offsets = col.offsets;
    /** The whole buffer as text once decoded and ASCII, else `null`. */
    this.all = undefined;
  }
  /** Row `i`'s text (`Record.text` inlines the ASCII case: calls cost). */
  get(i) {
    const col = this.col;
    if (this.all === undefined) {
      const all = decoder.decode(col.data);
      this.all = all.length === col.data.length && all.indexOf("\uFFFD") < 0 ? all : null;
    }
    if (this.all !== null) return this.all.slice(this.offsets[i], this.offsets[i + 1]);
    return decoder.decode(slice(col, i));
  }
}

/** One call's input batch, with its keys and values readable as text. */
export class Rows {
  constructor(batch) {
    this.batch = batch;
    this.length = batch.timestamps.length;
    this.keyText = new TextColumn(batch.keys);
    this.valueText = new TextColumn(batch.values);
  }
}

/**
 * One input record: `key` and `value` (Uint8Array), `timestamp` (ms, a
 * Number), `keyText()`, `text()`, `json()`, `header(name)`. Fields are read
 * only when asked for.
 */
export class Record {
  constructor(rows, index) {
    this.rows = rows;
    this.index = index;
  }
  /** The key's bytes. */
  get key() {
    return slice(this.rows.batch.keys, this.index);
  }
  /** The value's bytes. */
  get value() {
    return slice(this.rows.batch.values, this.index);
  }
  /** Event time in milliseconds. */
  get timestamp() {
    return Number(this.rows.batch.timestamps[this.index]);
  }
  /** The key as a string. */
  keyText() {
    const c = this.rows.keyText;
    return c.all ? c.all.slice(c.offsets[this.index], c.offsets[this.index + 1]) : c.get(this.index);
  }
  /** The value as a string. */
  text() {
    const c = this.rows.valueText;
    return c.all ? c.all.slice(c.offsets[this.index], c.offsets[this.index + 1]) : c.get(this.index);
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
    const h = this.rows.batch.headers;
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

/** An output value as a string or bytes: other values become JSON text. */
export function outputValue(v) {
  return typeof v === "string" || v instanceof Uint8Array ? v : JSON.stringify(v);
}

export function asBytes(v) {
  if (v instanceof Uint8Array) return v;
  return encoder.encode(typeof v === "string" ? v : JSON.stringify(v));
}

/**
 * Builds a `bytes-column` from strings and byte arrays. When every part is
 * an ASCII string, they are joined and encoded in one call, and the offsets
 * are the strings' lengths; otherwise each part is encoded and copied into
 * one buffer.
 */
export function column(parts) {
  const n = parts.length;
  const offsets = new Uint32Array(n + 1);
  let strings = true;
  for (let i = 0; i < n && strings; i++) strings = typeof parts[i] === "string";
  if (strings) {
    const joined = parts.join("");
    const data = encoder.encode(joined);
    if (data.length === joined.length) {
      for (let i = 0, t = 0; i < n; i++) offsets[i + 1] = t += parts[i].length;
      return { data, offsets };
    }
  }
  const bytes = parts.map(asBytes);
  let total = 0;
  for (let i = 0; i < n; i++) offsets[i + 1] = total += bytes[i].length;
  const data = new Uint8Array(total);
  for (let i = 0; i < n; i++) data.set(bytes[i], offsets[i]);
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
    this.parents.push(parent);
    if (!(out instanceof Row)) {
      this.values.push(outputValue(out));
      if (this.keys !== null) this.keys.push(this.parentKey(parent));
      if (this.timestamps !== null) this.timestamps.push(this.parentTimestamp(parent));
      return;
    }
    const r = out;
    this.values.push(outputValue(r.value));
    if (r.key !== undefined && this.keys === null) this.keys = this.parents.slice(0, -1).map(this.parentKey);
    if (this.keys !== null) this.keys.push(r.key === undefined ? this.parentKey(parent) : outputValue(r.key));
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
        const rows = new Rows(batch);
        for (let i = 0, n = rows.length; i < n; i++) if (op.keep(new Record(rows, i))) keep.push(i);
        return Uint32Array.from(keep);
      });
    },
  };
}

/** Finishes a map batch from row `i` on, once its output `first` set a key or timestamp. */
function mapRows(batch, rows, op, values, i, first) {
  const out = batchOutput(batch);
  for (let j = 0; j < i; j++) out.add(j, values[j]);
  out.add(i, first);
  for (let j = i + 1; j < rows.length; j++) out.add(j, op.map(new Record(rows, j)));
  return out.finish(true);
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
        // Plain values (no `row(...)`) go straight into the column: one
        // output per input, so no parents, keys or timestamps.
        const rows = new Rows(batch);
        const n = rows.length;
        const values = new Array(n);
        for (let i = 0; i < n; i++) {
          const o = op.map(new Record(rows, i));
          if (o instanceof Row) return mapRows(batch, rows, op, values, i, o);
          values[i] = outputValue(o);
        }
        return { parents: new Uint32Array(0), values: column(values), keys: undefined, timestamps: undefined, headers: undefined };
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
        const rows = new Rows(batch);
        for (let i = 0, n = rows.length; i < n; i++) {
          for (const o of op.flatMap(new Record(rows, i)) || []) out.add(i, o);
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
        const rows = new Rows(records);
        for (let r = 0, n = rows.length; r < n; r++) {
          const g = groups[r];
          accs[g] = op.add(accs[g], new Record(rows, r));
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
