"""Write weir stream operators in Python.

A weir operator is a WebAssembly component implementing one world of the
`weir:udf` WIT package. This module hides the raw bindings that componentize-py
generates: subclass `Filter`, `Map`, `FlatMap`, `Aggregate` or
`KeyedProcess`, implement one method per record (and per pane or timer), and
export the class under the name componentize-py looks for:

| world                    | base class     | export                                            |
|--------------------------|----------------|---------------------------------------------------|
| filter-operator          | `Filter`       | `Filter = weir_udf.filter_operator(Cls)`          |
| map-operator             | `Map`          | `Mapper = weir_udf.map_operator(Cls)`             |
| flat-map-operator        | `FlatMap`      | `FlatMapper = weir_udf.flat_map_operator(Cls)`    |
| aggregate-operator       | `Aggregate`    | `Aggregator = weir_udf.aggregate_operator(Cls)`   |
| keyed-process-operator   | `KeyedProcess` | `KeyedProcessor = weir_udf.keyed_operator(Cls)`   |

    import weir_udf

    class Shout(weir_udf.Map):
        def map(self, record):
            return record.value.upper()

    Mapper = weir_udf.map_operator(Shout)

Build with `weir udf build DIR` (which runs
`componentize-py -d wit -w map-operator componentize app -o out.wasm`).

Records arrive in batches, one call per batch; the host keeps keys,
timestamps and headers you do not change, so returning only a value is the
cheap path.
"""

import json
import struct

from componentize_py_types import Err
from wit_world.imports import types

# Keyed state and timers exist in the keyed-process-operator world only.
# They are imported here, at build time: componentize-py snapshots the
# interpreter then, and a component has no files to import from later.
try:
    from wit_world.imports import keyed_state as _keyed_state_api
    from wit_world.imports import timers as _timers
    from wit_world.exports import keyed_processor as _keyed_processor
except ImportError:
    _keyed_state_api = _timers = _keyed_processor = None


class Config:
    """The operator's `config` table from the job file, as strings."""

    def __init__(self, pairs):
        self._pairs = dict(pairs)

    def get(self, key, default=None):
        """The raw string of `key`, or `default`."""
        return self._pairs.get(key, default)

    def number(self, key, default):
        """`key` as a float, or `default`; a bad value is a config error."""
        raw = self._pairs.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise OperatorError.config(f"`{key}` = {raw!r} is not a number")


class OperatorError(Exception):
    """Raise to fail the job with a clear message."""

    def __init__(self, message, kind="failed"):
        super().__init__(message)
        self.kind = kind

    @staticmethod
    def config(message):
        return OperatorError(message, "config")

    @staticmethod
    def record(message):
        return OperatorError(message, "record")


def _wit_error(e):
    if isinstance(e, OperatorError):
        if e.kind == "config":
            return Err(types.Error_InvalidConfig(str(e)))
        if e.kind == "record":
            return Err(types.Error_InvalidRecord(str(e)))
    return Err(types.Error_Failed(f"{type(e).__name__}: {e}"))


class Record:
    """One input record: `key` and `value` (bytes), `timestamp` (ms), `headers`."""

    __slots__ = ("index", "key", "value", "timestamp", "_batch")

    def __init__(self, batch, index):
        self._batch = batch
        self.index = index
        k, v = batch.keys, batch.values
        self.key = k.data[k.offsets[index]:k.offsets[index + 1]]
        self.value = v.data[v.offsets[index]:v.offsets[index + 1]]
        self.timestamp = batch.timestamps[index]

    @property
    def headers(self):
        """The record's headers as a list of (name, value) byte pairs."""
        h = self._batch.headers
        if not h.row_offsets:
            return []
        out = []
        for i in range(h.row_offsets[self.index], h.row_offsets[self.index + 1]):
            n, v = h.names, h.values
            out.append((n.data[n.offsets[i]:n.offsets[i + 1]], v.data[v.offsets[i]:v.offsets[i + 1]]))
        return out

    def json(self):
        """The value parsed as JSON."""
        try:
            return json.loads(self.value)
        except ValueError as e:
            raise OperatorError.record(f"record {self.index}: value is not JSON: {e}")


class Row:
    """An output row: a value and, optionally, a new key or timestamp."""

    __slots__ = ("value", "key", "timestamp")

    def __init__(self, value, key=None, timestamp=None):
        self.value = value
        self.key = key
        self.timestamp = timestamp


def _as_bytes(v):
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    return json.dumps(v, separators=(",", ":")).encode()


class _OutputBuilder:
    def __init__(self, batch):
        self.batch = batch
        self.parents = []
        self.values = []
        self.keys = None
        self.timestamps = None

    def add(self, parent, out):
        row = out if isinstance(out, Row) else Row(out)
        n = len(self.parents)
        self.parents.append(parent)
        self.values.append(_as_bytes(row.value))
        if row.key is not None and self.keys is None:
            self.keys = [None] * n
        if self.keys is not None:
            self.keys.append(None if row.key is None else _as_bytes(row.key))
        if row.timestamp is not None and self.timestamps is None:
            self.timestamps = [self.batch.timestamps[p] for p in self.parents[:n]]
        if self.timestamps is not None:
            self.timestamps.append(self.batch.timestamps[parent] if row.timestamp is None else row.timestamp)

    def finish(self):
        keys = None
        if self.keys is not None:
            k = self.batch.keys
            keys = _column([
                key if key is not None else k.data[k.offsets[p]:k.offsets[p + 1]]
                for key, p in zip(self.keys, self.parents)
            ])
        identity = len(self.parents) == len(self.batch.timestamps) and all(
            p == i for i, p in enumerate(self.parents))
        return types.Output(
            parents=[] if identity else self.parents,
            values=_column(self.values),
            keys=keys,
            timestamps=self.timestamps,
            headers=None,
        )


def _column(parts):
    offsets = [0]
    total = 0
    for p in parts:
        total += len(p)
        offsets.append(total)
    return types.BytesColumn(data=b"".join(parts), offsets=offsets)


def _records(batch):
    return (Record(batch, i) for i in range(len(batch.timestamps)))


class Filter:
    """Keeps the records for which `keep` returns true."""

    def init(self, config):
        """Reads the configuration (a `Config`)."""

    def keep(self, record):
        raise NotImplementedError


class Map:
    """Returns one output (bytes, str, a JSON-able object or a `Row`) per record."""

    def init(self, config):
        """Reads the configuration (a `Config`)."""

    def map(self, record):
        raise NotImplementedError


class FlatMap:
    """Yields zero or more outputs per record."""

    def init(self, config):
        """Reads the configuration (a `Config`)."""

    def flat_map(self, record):
        raise NotImplementedError


def _init(cls, config):
    try:
        op = cls()
        op.init(Config(config))
        return op
    except Exception as e:
        raise _wit_error(e)


def filter_operator(cls):
    """Exports `cls` (a `Filter`); assign the result to `Filter` in app.py."""

    class _Export:
        def init(self, config):
            # componentize-py makes a new export object for every call: the
            # operator lives on the class, once per instance of the component.
            type(self).op = _init(cls, config)

        def filter(self, input):
            try:
                keep = self.op.keep
                return [r.index for r in _records(input) if keep(r)]
            except Exception as e:
                raise _wit_error(e)

    return _Export


def map_operator(cls):
    """Exports `cls` (a `Map`); assign the result to `Mapper` in app.py."""

    class _Export:
        def init(self, config):
            # componentize-py makes a new export object for every call: the
            # operator lives on the class, once per instance of the component.
            type(self).op = _init(cls, config)

        def map_batch(self, input):
            try:
                out = _OutputBuilder(input)
                fn = self.op.map
                for r in _records(input):
                    out.add(r.index, fn(r))
                return out.finish()
            except Exception as e:
                raise _wit_error(e)

    return _Export


def flat_map_operator(cls):
    """Exports `cls` (a `FlatMap`); assign the result to `FlatMapper` in app.py."""

    class _Export:
        def init(self, config):
            # componentize-py makes a new export object for every call: the
            # operator lives on the class, once per instance of the component.
            type(self).op = _init(cls, config)

        def flat_map_batch(self, input):
            try:
                out = _OutputBuilder(input)
                fn = self.op.flat_map
                for r in _records(input):
                    for o in fn(r) or ():
                        out.add(r.index, o)
                return out.finish()
            except Exception as e:
                raise _wit_error(e)

    return _Export


# ---- codecs: how accumulators and state values become bytes ---------------


class JsonCodec:
    """Values as JSON text (the default)."""

    @staticmethod
    def encode(value):
        return json.dumps(value, separators=(",", ":")).encode()

    @staticmethod
    def decode(data):
        return json.loads(data)


class TextCodec:
    """`str` values as their UTF-8 bytes."""

    @staticmethod
    def encode(value):
        return value.encode()

    @staticmethod
    def decode(data):
        return bytes(data).decode()


class BytesCodec:
    """`bytes` values as they are."""

    @staticmethod
    def encode(value):
        return bytes(value)

    @staticmethod
    def decode(data):
        return bytes(data)


class StructCodec:
    """Tuples packed with a `struct` format: `StructCodec("<qqq")` is three
    little-endian int64, the layout C, Zig or Rust would store."""

    def __init__(self, fmt):
        self._s = struct.Struct(fmt)

    def encode(self, value):
        return self._s.pack(*value)

    def decode(self, data):
        if len(data) != self._s.size:
            raise OperatorError(f"stored value has {len(data)} bytes, expected {self._s.size}")
        return self._s.unpack(data)


class _Int64Codec:
    _s = struct.Struct("<q")

    def encode(self, value):
        return self._s.pack(value)

    def decode(self, data):
        return self._s.unpack(data)[0]


#: An `int` as a little-endian int64.
Int64Codec = _Int64Codec()


# ---- windowed aggregation ---------------------------------------------------


class Pane:
    """A fired pane: `key` (bytes), `start` and `end` (ms) of its window."""

    __slots__ = ("key", "start", "end")

    def __init__(self, key, start, end):
        self.key = key
        self.start = start
        self.end = end


class Aggregate:
    """Folds the records of each window pane into an accumulator.

    The host stores accumulators as bytes (checkpointed with the job); the
    class attribute `codec` turns them into Python values and back
    (`JsonCodec` by default, or `StructCodec`, `Int64Codec`, …).
    """

    codec = JsonCodec

    def init(self, config):
        """Reads the configuration (a `Config`)."""

    def create_accumulator(self):
        raise NotImplementedError

    def add(self, acc, record):
        """Returns `acc` with `record` folded in."""
        raise NotImplementedError

    def merge(self, acc, other):
        """Returns the merge of two accumulators (session windows)."""
        raise NotImplementedError

    def result(self, acc, pane):
        """Returns the pane's output (as a map does), or a list of them."""
        raise NotImplementedError


def _slices(col):
    d, o = col.data, col.offsets
    return [d[o[i]:o[i + 1]] for i in range(len(o) - 1)]


def aggregate_operator(cls):
    """Exports `cls` (an `Aggregate`); assign the result to `Aggregator`."""

    class _Export:
        def init(self, config):
            type(self).op = _init(cls, config)

        def create_accumulator(self):
            try:
                op = self.op
                return op.codec.encode(op.create_accumulator())
            except Exception as e:
                raise _wit_error(e)

        def add(self, accumulators, groups, records):
            try:
                op = self.op
                decode, add = op.codec.decode, op.add
                accs = [decode(a) for a in _slices(accumulators)]
                for r, g in zip(_records(records), groups):
                    accs[g] = add(accs[g], r)
                return _column([op.codec.encode(a) for a in accs])
            except Exception as e:
                raise _wit_error(e)

        def merge(self, accumulators, groups):
            try:
                op = self.op
                merged = {}
                for a, g in zip(_slices(accumulators), groups):
                    v = op.codec.decode(a)
                    merged[g] = op.merge(merged[g], v) if g in merged else v
                return _column([op.codec.encode(merged[g]) for g in range(len(merged))])
            except Exception as e:
                raise _wit_error(e)

        def get_results(self, panes):
            try:
                op = self.op
                parents, values, timestamps, keyed = [], [], [], False
                keys = []
                for i, p in enumerate(panes):
                    out = op.result(op.codec.decode(p.accumulator),
                                    Pane(bytes(p.key), p.window.start, p.window.end))
                    for o in out if isinstance(out, list) else [out]:
                        row = o if isinstance(o, Row) else Row(o)
                        parents.append(i)
                        values.append(_as_bytes(row.value))
                        keys.append(p.key if row.key is None else _as_bytes(row.key))
                        keyed |= row.key is not None
                        timestamps.append(p.window.end - 1 if row.timestamp is None else row.timestamp)
                return types.Output(
                    parents=parents,
                    values=_column(values),
                    keys=_column(keys) if keyed else None,
                    timestamps=timestamps,
                    headers=None,
                )
            except Exception as e:
                raise _wit_error(e)

    return _Export


# ---- keyed processing -------------------------------------------------------


class Timer:
    """A timer that fired: `timestamp` (ms) and `domain`
    (`"event-time"` or `"processing-time"`)."""

    __slots__ = ("timestamp", "domain")

    def __init__(self, timestamp, domain):
        self.timestamp = timestamp
        self.domain = domain


class Context:
    """The keyed call in progress: the current `key`, timers, and emitting."""

    def __init__(self, key):
        self.key = bytes(key)
        self._values, self._timestamps, self._outputs, self._sides = [], [], [], []

    def emit(self, value, timestamp):
        """Emits a row (bytes, str or JSON-able) to the main output."""
        self._values.append(_as_bytes(value))
        self._timestamps.append(timestamp)
        self._outputs.append(0)

    def emit_side(self, name, value, timestamp):
        """Emits a row to the side output `name` (declared in the job file)."""
        if name not in self._sides:
            self._sides.append(name)
        self._values.append(_as_bytes(value))
        self._timestamps.append(timestamp)
        self._outputs.append(self._sides.index(name) + 1)

    @staticmethod
    def register_event_timer(timestamp):
        """`on_timer` runs once the watermark reaches `timestamp`."""
        _timers.register_event_timer(timestamp)

    @staticmethod
    def register_processing_timer(timestamp):
        _timers.register_processing_timer(timestamp)

    @staticmethod
    def delete_event_timer(timestamp):
        _timers.delete_event_timer(timestamp)

    @staticmethod
    def delete_processing_timer(timestamp):
        _timers.delete_processing_timer(timestamp)

    @staticmethod
    def current_watermark():
        return _timers.current_watermark()

    @staticmethod
    def current_processing_time():
        return _timers.current_processing_time()

    def _emitted(self):
        return _keyed_processor.Emitted(
            values=_column(self._values),
            timestamps=self._timestamps,
            outputs=bytes(self._outputs) if self._sides else b"",
            side_outputs=self._sides,
        )


def _keyed_state():
    return _keyed_state_api


class ValueState:
    """One value per key, held by the host."""

    def __init__(self, name, codec=JsonCodec):
        self.name, self.codec = name, codec

    def get(self, default=None):
        v = _keyed_state().value_get(self.name)
        return default if v is None else self.codec.decode(v)

    def set(self, value):
        _keyed_state().value_set(self.name, self.codec.encode(value))

    def clear(self):
        _keyed_state().clear(self.name)


class ListState:
    """A list per key, held by the host."""

    def __init__(self, name, codec=JsonCodec):
        self.name, self.codec = name, codec

    def get(self):
        return [self.codec.decode(v) for v in _keyed_state().list_get(self.name)]

    def add(self, value):
        _keyed_state().list_add(self.name, self.codec.encode(value))

    def set(self, values):
        _keyed_state().list_set(self.name, [self.codec.encode(v) for v in values])

    def clear(self):
        _keyed_state().clear(self.name)


class MapState:
    """A map per key, held by the host; `entries()` is ordered by key bytes."""

    def __init__(self, name, key_codec=TextCodec, value_codec=JsonCodec):
        self.name, self.key_codec, self.codec = name, key_codec, value_codec

    def get(self, key, default=None):
        v = _keyed_state().map_get(self.name, self.key_codec.encode(key))
        return default if v is None else self.codec.decode(v)

    def put(self, key, value):
        _keyed_state().map_put(self.name, self.key_codec.encode(key), self.codec.encode(value))

    def remove(self, key):
        _keyed_state().map_remove(self.name, self.key_codec.encode(key))

    def entries(self):
        return [(self.key_codec.decode(k), self.codec.decode(v))
                for k, v in _keyed_state().map_entries(self.name)]

    def clear(self):
        _keyed_state().clear(self.name)


class KeyedProcess:
    """Sees the records of one key at a time, with keyed state and timers."""

    def init(self, config):
        """Reads the configuration (a `Config`)."""

    def process(self, ctx, record):
        raise NotImplementedError

    def on_timer(self, ctx, timer):
        raise OperatorError(f"a timer fired at {timer.timestamp} but the operator has no on_timer")


def keyed_operator(cls):
    """Exports `cls` (a `KeyedProcess`); assign the result to `KeyedProcessor`."""

    class _Export:
        def init(self, config):
            type(self).op = _init(cls, config)

        def process(self, key, records):
            try:
                ctx = Context(key)
                process = self.op.process
                for r in _records(records):
                    process(ctx, r)
                return ctx._emitted()
            except Exception as e:
                raise _wit_error(e)

        def on_timer(self, key, timers):
            try:
                ctx = Context(key)
                for t in timers:
                    domain = ("event-time" if t.domain == _keyed_processor.TimeDomain.EVENT_TIME
                              else "processing-time")
                    self.op.on_timer(ctx, Timer(t.timestamp, domain))
                return ctx._emitted()
            except Exception as e:
                raise _wit_error(e)

    return _Export
