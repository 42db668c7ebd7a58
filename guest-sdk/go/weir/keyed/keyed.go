// Package keyed is keyed processing for weir operators in Go: the current
// key, emitting, keyed state and timers (keyed-process-operator only).
//
//	type Counter struct{ count *keyed.ValueState[int64] }
//
//	func (c *Counter) Process(ctx *keyed.Context, r weir.Record) error {
//		n, _, err := c.count.Get()
//		if err != nil {
//			return err
//		}
//		c.count.Set(n + 1)
//		ctx.Emitf(r.Timestamp, "seen %d", n+1)
//		ctx.RegisterEventTimer(r.Timestamp + 60_000)
//		return nil
//	}
//
//	func (c *Counter) OnTimer(ctx *keyed.Context, t keyed.Timer) error {
//		c.count.Clear()
//		return nil
//	}
//
//	func init() {
//		keyed.Register(&Counter{count: keyed.NewValueState("count", weir.Int64)})
//	}
package keyed

import (
	"fmt"

	"wit_component/weir"
	"wit_component/weir_udf_keyed_processor"
	"wit_component/weir_udf_keyed_state"
	"wit_component/weir_udf_timers"
	"wit_component/weir_udf_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Timer is a timer that fired.
type Timer struct {
	Timestamp int64
	// EventTime is true for event-time timers, false for processing time.
	EventTime bool
}

// Process is a keyed process function.
type Process interface {
	Process(ctx *Context, r weir.Record) error
	OnTimer(ctx *Context, t Timer) error
}

var op Process

// Register registers the operator of a keyed-process-operator component.
func Register(p Process) { weir.Operator, op = p, p }

// Context is the keyed call in progress.
type Context struct {
	key        []byte
	values     [][]byte
	timestamps []int64
	outputs    []uint8
	sides      []string
}

// Key is the current key.
func (c *Context) Key() []byte { return c.key }

// Emit emits a row to the main output.
func (c *Context) Emit(value []byte, timestamp int64) { c.emit(0, value, timestamp) }

// Emitf emits a row formatted with fmt to the main output.
func (c *Context) Emitf(timestamp int64, format string, args ...any) {
	c.emit(0, fmt.Appendf(nil, format, args...), timestamp)
}

// EmitSide emits a row to the side output `name` (declared in the job file).
func (c *Context) EmitSide(name string, value []byte, timestamp int64) {
	i := 0
	for i < len(c.sides) && c.sides[i] != name {
		i++
	}
	if i == len(c.sides) {
		c.sides = append(c.sides, name)
	}
	c.emit(uint8(i+1), value, timestamp)
}

func (c *Context) emit(output uint8, value []byte, timestamp int64) {
	c.values = append(c.values, value)
	c.timestamps = append(c.timestamps, timestamp)
	c.outputs = append(c.outputs, output)
}

// RegisterEventTimer: OnTimer runs once the watermark reaches timestamp.
func (c *Context) RegisterEventTimer(t int64) { weir_udf_timers.RegisterEventTimer(t) }

// RegisterProcessingTimer: OnTimer runs once the clock reaches timestamp.
func (c *Context) RegisterProcessingTimer(t int64) { weir_udf_timers.RegisterProcessingTimer(t) }

// DeleteEventTimer removes an event-time timer of the current key.
func (c *Context) DeleteEventTimer(t int64) { weir_udf_timers.DeleteEventTimer(t) }

// DeleteProcessingTimer removes a processing-time timer of the current key.
func (c *Context) DeleteProcessingTimer(t int64) { weir_udf_timers.DeleteProcessingTimer(t) }

// CurrentWatermark is the operator's watermark (ms).
func (c *Context) CurrentWatermark() int64 { return weir_udf_timers.CurrentWatermark() }

// CurrentProcessingTime is the host's clock (ms).
func (c *Context) CurrentProcessingTime() int64 { return weir_udf_timers.CurrentProcessingTime() }

func (c *Context) emitted() weir_udf_keyed_processor.Emitted {
	e := weir_udf_keyed_processor.Emitted{Values: weir.Column(c.values), Timestamps: c.timestamps}
	if len(c.sides) > 0 {
		e.Outputs, e.SideOutputs = c.outputs, c.sides
	}
	return e
}

type result = witTypes.Result[weir_udf_keyed_processor.Emitted, weir_udf_types.Error]

// CallProcess is the glue of `process`.
func CallProcess(key []byte, b weir_udf_types.Batch) result {
	c := &Context{key: key}
	for i := range weir.Rows(&b) {
		if err := op.Process(c, weir.RecordAt(&b, i)); err != nil {
			return witTypes.Err[weir_udf_keyed_processor.Emitted](weir.WitError(err))
		}
	}
	return witTypes.Ok[weir_udf_keyed_processor.Emitted, weir_udf_types.Error](c.emitted())
}

// CallOnTimer is the glue of `on-timer`.
func CallOnTimer(key []byte, timers []weir_udf_keyed_processor.Timer) result {
	c := &Context{key: key}
	for _, t := range timers {
		ev := t.Domain == weir_udf_keyed_processor.TimeDomain_EventTime
		if err := op.OnTimer(c, Timer{Timestamp: t.Timestamp, EventTime: ev}); err != nil {
			return witTypes.Err[weir_udf_keyed_processor.Emitted](weir.WitError(err))
		}
	}
	return witTypes.Ok[weir_udf_keyed_processor.Emitted, weir_udf_types.Error](c.emitted())
}

// ValueState is one value per key, held by the host.
type ValueState[T any] struct {
	name  string
	codec weir.Codec[T]
}

// NewValueState declares value state `name`.
func NewValueState[T any](name string, codec weir.Codec[T]) *ValueState[T] {
	return &ValueState[T]{name, codec}
}

// Get is the value of the current key; ok is false if unset.
func (s *ValueState[T]) Get() (v T, ok bool, err error) {
	got := weir_udf_keyed_state.ValueGet(s.name)
	if got.IsNone() {
		return v, false, nil
	}
	v, err = s.codec.Decode(got.Some())
	return v, err == nil, err
}

// Set sets the value of the current key.
func (s *ValueState[T]) Set(v T) { weir_udf_keyed_state.ValueSet(s.name, s.codec.Encode(v)) }

// Clear clears the value of the current key.
func (s *ValueState[T]) Clear() { weir_udf_keyed_state.Clear(s.name) }

// ListState is a list per key, held by the host.
type ListState[T any] struct {
	name  string
	codec weir.Codec[T]
}

// NewListState declares list state `name`.
func NewListState[T any](name string, codec weir.Codec[T]) *ListState[T] {
	return &ListState[T]{name, codec}
}

// Get is the list of the current key, in insertion order.
func (s *ListState[T]) Get() ([]T, error) {
	raw := weir_udf_keyed_state.ListGet(s.name)
	out := make([]T, 0, len(raw))
	for _, b := range raw {
		v, err := s.codec.Decode(b)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Add appends to the list of the current key.
func (s *ListState[T]) Add(v T) { weir_udf_keyed_state.ListAdd(s.name, s.codec.Encode(v)) }

// Set replaces the list of the current key.
func (s *ListState[T]) Set(vs []T) {
	raw := make([][]byte, len(vs))
	for i, v := range vs {
		raw[i] = s.codec.Encode(v)
	}
	weir_udf_keyed_state.ListSet(s.name, raw)
}

// Clear clears the list of the current key.
func (s *ListState[T]) Clear() { weir_udf_keyed_state.Clear(s.name) }

// MapState is a map per key, held by the host.
type MapState[K, V any] struct {
	name string
	keys weir.Codec[K]
	vals weir.Codec[V]
}

// NewMapState declares map state `name`.
func NewMapState[K, V any](name string, keys weir.Codec[K], values weir.Codec[V]) *MapState[K, V] {
	return &MapState[K, V]{name, keys, values}
}

// Get is the value of k; ok is false if absent.
func (s *MapState[K, V]) Get(k K) (v V, ok bool, err error) {
	got := weir_udf_keyed_state.MapGet(s.name, s.keys.Encode(k))
	if got.IsNone() {
		return v, false, nil
	}
	v, err = s.vals.Decode(got.Some())
	return v, err == nil, err
}

// Put sets k to v.
func (s *MapState[K, V]) Put(k K, v V) {
	weir_udf_keyed_state.MapPut(s.name, s.keys.Encode(k), s.vals.Encode(v))
}

// Remove removes k.
func (s *MapState[K, V]) Remove(k K) { weir_udf_keyed_state.MapRemove(s.name, s.keys.Encode(k)) }

// Entry is one entry of a map state.
type Entry[K, V any] struct {
	Key   K
	Value V
}

// Entries is every entry, ordered by key bytes.
func (s *MapState[K, V]) Entries() ([]Entry[K, V], error) {
	raw := weir_udf_keyed_state.MapEntries(s.name)
	out := make([]Entry[K, V], 0, len(raw))
	for _, e := range raw {
		k, err := s.keys.Decode(e.F0)
		if err != nil {
			return nil, err
		}
		v, err := s.vals.Decode(e.F1)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry[K, V]{k, v})
	}
	return out, nil
}

// Clear clears the map of the current key.
func (s *MapState[K, V]) Clear() { weir_udf_keyed_state.Clear(s.name) }
