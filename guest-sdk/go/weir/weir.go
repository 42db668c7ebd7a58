// Package weir lets you write weir stream operators in Go.
//
// A weir operator is a WebAssembly component implementing one world of the
// `weir:udf` WIT package. This package hides the raw bindings that
// wit-bindgen generates: write a type with one method per record (and per
// pane), register it in an init function of your main package, and build
// with `weir udf build DIR` (udf.toml: `language = "go"`):
//
//	package main
//
//	import "wit_component/weir"
//
//	type MinAmount struct{ min int64 }
//
//	func (m *MinAmount) Init(c weir.Config) (err error) {
//		m.min, err = c.Int("min", 50)
//		return
//	}
//
//	func (m *MinAmount) Keep(r weir.Record) (bool, error) {
//		return len(r.Value) >= int(m.min), nil
//	}
//
//	func init() { weir.RegisterFilter(&MinAmount{}) }
//
// Per world: filter-operator → RegisterFilter (Keep); map-operator →
// RegisterMap (Map, emitting exactly one row); flat-map-operator →
// RegisterFlatMap (FlatMap); aggregate-operator → RegisterAggregate
// (CreateAccumulator, Add, Merge, Result, with a Codec for the
// accumulator); keyed-process-operator → keyed.Register (package
// wit_component/weir/keyed: Process, OnTimer, keyed state and timers).
// Any operator may also implement Initializer.
//
// Slices the SDK gives you (keys, values) are valid during the call only:
// copy what you keep. Do not define `main`; the build provides it.
package weir

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"

	"wit_component/weir_udf_types"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Go's collector must never run inside `cabi_realloc`, where the host
// copies a call's arguments in: a collection there reads the wall clock, an
// import the component model forbids at that point, and the guest traps. So
// automatic collection is off, and Collect (deferred by every export of the
// glue) collects between calls, once 32 MiB were allocated since the last.
func init() { debug.SetGCPercent(-1) }

const collectEvery = 32 << 20

var (
	allocated   = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	collectedAt uint64
)

// Collect runs the collector if enough was allocated since it last ran.
func Collect() {
	metrics.Read(allocated)
	if now := allocated[0].Value.Uint64(); now-collectedAt >= collectEvery {
		runtime.GC()
		collectedAt = now
	}
}

// ErrorKind says why an operator call failed.
type ErrorKind uint8

const (
	// InvalidConfig: the configuration is unusable.
	InvalidConfig ErrorKind = iota
	// InvalidRecord: a record cannot be processed.
	InvalidRecord
	// Failed: anything else.
	Failed
)

// Error is an operator failure with its kind; any other error is Failed.
type Error struct {
	Kind    ErrorKind
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf makes an *Error of the given kind.
func Errorf(kind ErrorKind, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// WitError turns an error into the WIT `error` variant.
func WitError(err error) weir_udf_types.Error {
	if e, ok := err.(*Error); ok {
		switch e.Kind {
		case InvalidConfig:
			return weir_udf_types.MakeErrorInvalidConfig(e.Message)
		case InvalidRecord:
			return weir_udf_types.MakeErrorInvalidRecord(e.Message)
		}
	}
	return weir_udf_types.MakeErrorFailed(err.Error())
}

// Config is the operator's `config` table from the job file, as strings.
type Config map[string]string

// Int is `key` as an integer, or dflt; a bad value is an InvalidConfig error.
func (c Config) Int(key string, dflt int64) (int64, error) {
	raw, ok := c[key]
	if !ok {
		return dflt, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, Errorf(InvalidConfig, "`%s` = %q is not an integer", key, raw)
	}
	return v, nil
}

// Float is `key` as a number, or dflt.
func (c Config) Float(key string, dflt float64) (float64, error) {
	raw, ok := c[key]
	if !ok {
		return dflt, nil
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return 0, Errorf(InvalidConfig, "`%s` = %q is not a number", key, raw)
	}
	return v, nil
}

// Initializer is implemented by operators that read their configuration.
type Initializer interface {
	Init(config Config) error
}

// Init calls op's Init, if it has one, with the WIT configuration.
func Init(op any, pairs []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, weir_udf_types.Error] {
	if op == nil {
		return witTypes.Err[witTypes.Unit](weir_udf_types.MakeErrorFailed("no operator registered: call weir.Register… in an init function"))
	}
	if i, ok := op.(Initializer); ok {
		c := Config{}
		for _, p := range pairs {
			// The strings point into the call's arguments: keep copies.
			c[strings.Clone(p.F0)] = strings.Clone(p.F1)
		}
		if err := i.Init(c); err != nil {
			return witTypes.Err[witTypes.Unit](WitError(err))
		}
	}
	return witTypes.Ok[witTypes.Unit, weir_udf_types.Error](witTypes.Unit{})
}

// Record is one input record.
type Record struct {
	// Index is the row of the record in its batch.
	Index int
	// Key (empty if none) and Value.
	Key, Value []byte
	// Timestamp is the event time, ms since the Unix epoch.
	Timestamp int64
	batch     *weir_udf_types.Batch
}

func cell(c *weir_udf_types.BytesColumn, i int) []byte {
	return c.Data[c.Offsets[i]:c.Offsets[i+1]:c.Offsets[i+1]]
}

// Rows is the number of rows of a batch.
func Rows(b *weir_udf_types.Batch) int { return len(b.Timestamps) }

// RecordAt is row i of a batch.
func RecordAt(b *weir_udf_types.Batch, i int) Record {
	return Record{Index: i, Key: cell(&b.Keys, i), Value: cell(&b.Values, i), Timestamp: b.Timestamps[i], batch: b}
}

// Header is the value of the record's first header called name.
func (r Record) Header(name string) ([]byte, bool) {
	h := &r.batch.Headers
	if len(h.RowOffsets) == 0 {
		return nil, false
	}
	for e := h.RowOffsets[r.Index]; e < h.RowOffsets[r.Index+1]; e++ {
		if string(cell(&h.Names, int(e))) == name {
			return cell(&h.Values, int(e)), true
		}
	}
	return nil, false
}

// JSON parses the value into v.
func (r Record) JSON(v any) error {
	if err := json.Unmarshal(r.Value, v); err != nil {
		return Errorf(InvalidRecord, "record %d: value is not JSON: %v", r.Index, err)
	}
	return nil
}

// Column builds a WIT bytes-column from values: one buffer, one copy.
func Column(values [][]byte) weir_udf_types.BytesColumn {
	total := 0
	for _, v := range values {
		total += len(v)
	}
	data := make([]byte, 0, total)
	offsets := make([]uint32, 1, len(values)+1)
	for _, v := range values {
		data = append(data, v...)
		offsets = append(offsets, uint32(len(data)))
	}
	return weir_udf_types.BytesColumn{Data: data, Offsets: offsets}
}

// Output collects the rows a map, flat-map or window result emits.
type Output struct {
	parents              []uint32
	data                 []byte
	offsets              []uint32
	keys                 [][]byte
	timestamps           []int64
	keyed, timed         bool
	parent               uint32
	parentKey            []byte
	parentTimestamp      int64
}

// NewOutput starts an output.
func NewOutput() *Output { return &Output{offsets: []uint32{0}} }

// Begin sets the input row (or pane) that rows emitted next come from.
func (o *Output) Begin(parent int, key []byte, timestamp int64) {
	o.parent, o.parentKey, o.parentTimestamp = uint32(parent), key, timestamp
}

// Emit emits a row with this value; it keeps the key and time of its record
// (or pane) unless SetKey or SetTimestamp changes them.
func (o *Output) Emit(value []byte) {
	o.data = append(o.data, value...)
	o.row()
}

// EmitString emits a row with this text.
func (o *Output) EmitString(value string) {
	o.data = append(o.data, value...)
	o.row()
}

// Emitf emits a row formatted with fmt.
func (o *Output) Emitf(format string, args ...any) {
	o.data = fmt.Appendf(o.data, format, args...)
	o.row()
}

func (o *Output) row() {
	o.offsets = append(o.offsets, uint32(len(o.data)))
	o.parents = append(o.parents, o.parent)
	o.keys = append(o.keys, o.parentKey)
	o.timestamps = append(o.timestamps, o.parentTimestamp)
}

// SetKey sets the key of the row emitted last.
func (o *Output) SetKey(key []byte) {
	if n := len(o.keys); n > 0 {
		o.keys[n-1] = bytes.Clone(key)
		o.keyed = true
	}
}

// SetTimestamp sets the event time of the row emitted last.
func (o *Output) SetTimestamp(t int64) {
	if n := len(o.timestamps); n > 0 {
		o.timestamps[n-1] = t
		o.timed = true
	}
}

// Len is the number of rows emitted.
func (o *Output) Len() int { return len(o.parents) }

// Finish makes the WIT output; dense leaves `parents` empty (a map).
func (o *Output) Finish(dense bool) weir_udf_types.Output {
	out := weir_udf_types.Output{
		Values: weir_udf_types.BytesColumn{Data: o.data, Offsets: o.offsets},
	}
	if !dense {
		out.Parents = o.parents
	}
	if o.keyed {
		out.Keys = witTypes.Some(Column(o.keys))
	}
	if o.timed {
		out.Timestamps = witTypes.Some(o.timestamps)
	}
	return out
}

// Codec turns accumulators and state values into bytes and back.
type Codec[T any] interface {
	Encode(v T) []byte
	Decode(b []byte) (T, error)
}

type binaryCodec[T any] struct{}

func (binaryCodec[T]) Encode(v T) []byte {
	b, err := binary.Append(nil, binary.LittleEndian, v)
	if err != nil {
		panic(err)
	}
	return b
}

func (binaryCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if _, err := binary.Decode(b, binary.LittleEndian, &v); err != nil {
		return v, Errorf(Failed, "stored value of %d bytes does not decode: %v", len(b), err)
	}
	return v, nil
}

// Binary stores fixed-size values (integers, floats, arrays and structs of
// them) little-endian, field after field: the layout C, Zig or Rust store.
func Binary[T any]() Codec[T] { return binaryCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// JSON stores values as JSON text.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type stringCodec struct{}

func (stringCodec) Encode(v string) []byte        { return []byte(v) }
func (stringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// String stores text as its bytes.
var String Codec[string] = stringCodec{}

// Int64 stores an int64 little-endian.
var Int64 Codec[int64] = binaryCodec[int64]{}

// ---- stateless operators ----

// Filter keeps the records for which Keep is true.
type Filter interface {
	Keep(r Record) (bool, error)
}

// Map turns every record into exactly one row.
type Map interface {
	Map(r Record, out *Output) error
}

// FlatMap turns every record into zero or more rows.
type FlatMap interface {
	FlatMap(r Record, out *Output) error
}

// The registered operator; the glue of each world calls it.
var (
	Operator any
	filterOp  Filter
	mapOp     Map
	flatMapOp FlatMap
)

// RegisterFilter registers the operator of a filter-operator component.
func RegisterFilter(op Filter) { Operator, filterOp = op, op }

// RegisterMap registers the operator of a map-operator component.
func RegisterMap(op Map) { Operator, mapOp = op, op }

// RegisterFlatMap registers the operator of a flat-map-operator component.
func RegisterFlatMap(op FlatMap) { Operator, flatMapOp = op, op }

// CallFilter runs the registered filter over a batch.
func CallFilter(b weir_udf_types.Batch) witTypes.Result[[]uint32, weir_udf_types.Error] {
	keep := make([]uint32, 0, Rows(&b))
	for i := range Rows(&b) {
		k, err := filterOp.Keep(RecordAt(&b, i))
		if err != nil {
			return witTypes.Err[[]uint32](WitError(err))
		}
		if k {
			keep = append(keep, uint32(i))
		}
	}
	return witTypes.Ok[[]uint32, weir_udf_types.Error](keep)
}

// CallMap runs the registered map (flat = false) or flat-map over a batch.
func CallMap(b weir_udf_types.Batch, flat bool) witTypes.Result[weir_udf_types.Output, weir_udf_types.Error] {
	out := NewOutput()
	for i := range Rows(&b) {
		r := RecordAt(&b, i)
		out.Begin(i, r.Key, r.Timestamp)
		before := out.Len()
		var err error
		if flat {
			err = flatMapOp.FlatMap(r, out)
		} else {
			err = mapOp.Map(r, out)
			if err == nil && out.Len() != before+1 {
				err = Errorf(Failed, "Map emitted %d rows for record %d; a map emits exactly one", out.Len()-before, i)
			}
		}
		if err != nil {
			return witTypes.Err[weir_udf_types.Output](WitError(err))
		}
	}
	return witTypes.Ok[weir_udf_types.Output, weir_udf_types.Error](out.Finish(!flat))
}
