// Tests of weir.js's batch handling, run in Node (`node --test
// guest-sdk/js/test`; tests/all/conformance.rs runs them). The conformance
// suite runs the SDK inside a component on ASCII input; these cover the
// paths it does not reach: non-ASCII text, `row(...)` from a map, outputs
// that mix strings, bytes and JSON.
import { test } from "node:test";
import assert from "node:assert/strict";
import { column, filterOperator, flatMapOperator, mapOperator, row } from "../weir.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

function bytesColumn(parts) {
  const bytes = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  const offsets = new Uint32Array(bytes.length + 1);
  for (let i = 0; i < bytes.length; i++) offsets[i + 1] = offsets[i] + bytes[i].length;
  const data = new Uint8Array(offsets[bytes.length]);
  bytes.forEach((b, i) => data.set(b, offsets[i]));
  return { data, offsets };
}

function batch(rows) {
  const empty = { data: new Uint8Array(0), offsets: new Uint32Array(0) };
  return {
    keys: bytesColumn(rows.map((r) => r[0])),
    values: bytesColumn(rows.map((r) => r[1])),
    timestamps: BigInt64Array.from(rows.map((r) => BigInt(r[2]))),
    headers: { rowOffsets: new Uint32Array(0), names: empty, values: empty },
  };
}

function texts(col) {
  const out = [];
  for (let i = 0; i + 1 < col.offsets.length; i++) out.push(dec.decode(col.data.subarray(col.offsets[i], col.offsets[i + 1])));
  return out;
}

function run(op, b) {
  op.init([]);
  return op.mapBatch ? op.mapBatch(b) : op.flatMapBatch(b);
}

test("ASCII values are read from one decoded buffer", () => {
  const out = run(mapOperator(class { map(r) { return `${r.keyText()}:${r.text()}:${r.timestamp}`; } }), batch([
    ["a", "one", 1],
    ["bb", "", 2],
    ["c", "three", 3],
  ]));
  assert.deepEqual(texts(out.values), ["a:one:1", "bb::2", "c:three:3"]);
  assert.equal(out.parents.length, 0);
  assert.equal(out.keys, undefined);
});

test("non-ASCII values and outputs keep their characters and byte offsets", () => {
  const out = run(mapOperator(class { map(r) { return r.text().toUpperCase() + "→"; } }), batch([
    ["k", "grün", 1],
    ["k", "plain", 2],
    ["k", "日本", 3],
    ["k", "😀x", 4],
  ]));
  assert.deepEqual(texts(out.values), ["GRÜN→", "PLAIN→", "日本→", "😀X→"]);
});

test("invalid UTF-8 reads as replacement characters, row by row", () => {
  const out = run(mapOperator(class { map(r) { return r.text(); } }), batch([
    ["k", new Uint8Array([0x61, 0xff]), 1],
    ["k", "b", 2],
  ]));
  assert.deepEqual(texts(out.values), ["a\uFFFD", "b"]);
});

test("a map that returns row(...) part way keeps earlier rows' keys and timestamps", () => {
  const out = run(mapOperator(class {
    map(r) {
      return r.timestamp === 2 ? row(r.text(), { key: "new", timestamp: 20 }) : r.text();
    }
  }), batch([
    ["k1", "a", 1],
    ["k2", "b", 2],
    ["k3", "c", 3],
  ]));
  assert.deepEqual(texts(out.values), ["a", "b", "c"]);
  assert.deepEqual(texts(out.keys), ["k1", "new", "k3"]);
  assert.deepEqual([...out.timestamps], [1n, 20n, 3n]);
  assert.equal(out.parents.length, 0);
});

test("outputs mix strings, bytes and JSON", () => {
  const out = run(flatMapOperator(class {
    *flatMap(r) {
      yield r.text();
      yield r.value;
      yield { n: r.timestamp };
    }
  }), batch([["k", "é", 7]]));
  assert.deepEqual(texts(out.values), ["é", "é", '{"n":7}']);
  assert.deepEqual([...out.parents], [0, 0, 0]);
});

test("filter keeps the rows its method keeps", () => {
  const f = filterOperator(class { keep(r) { return r.text().length > 1; } });
  f.init([]);
  assert.deepEqual([...f.filter(batch([["k", "ab", 1], ["k", "c", 2], ["k", "ü!", 3]]))], [0, 2]);
});

test("column offsets count bytes, not characters", () => {
  const c = column(["ü", "ab", new Uint8Array([1, 2, 3])]);
  assert.deepEqual([...c.offsets], [0, 2, 4, 7]);
  const a = column(["ab", "c"]);
  assert.deepEqual([...a.offsets], [0, 2, 3]);
  assert.deepEqual(dec.decode(a.data), "abc");
});
