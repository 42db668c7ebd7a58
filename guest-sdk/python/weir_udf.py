"""Write weir stream operators in Python.

A weir operator is a WebAssembly component implementing one world of the
`weir:udf` WIT package. This module hides the raw bindings that componentize-py
generates: subclass `Filter`, `Map` or `FlatMap`, implement one method per
record, and export the class with `filter_operator`, `map_operator` or
`flat_map_operator` under the name componentize-py looks for:

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

from componentize_py_types import Err
from wit_world.imports import types


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
