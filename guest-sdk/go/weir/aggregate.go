package weir

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/weir_udf_types"
)

// Pane is a fired pane: one window [Start, End) of one key.
type Pane struct {
	Key        []byte
	Start, End int64
}

// Aggregate folds the records of each window pane into an accumulator of
// type A, which the host stores as bytes (through the Codec given to
// RegisterAggregate).
type Aggregate[A any] interface {
	CreateAccumulator() A
	Add(acc *A, r Record) error
	Merge(acc *A, other A) error
	Result(acc A, pane Pane, out *Output) error
}

// The registered aggregate, type-erased for the glue.
var aggregateOp struct {
	create func() ([]byte, error)
	add    func(accs weir_udf_types.BytesColumn, groups []uint32, b weir_udf_types.Batch) (weir_udf_types.BytesColumn, error)
	merge  func(accs weir_udf_types.BytesColumn, groups []uint32) (weir_udf_types.BytesColumn, error)
	result func(acc []byte, pane Pane, out *Output) error
}

func decodeAll[A any](codec Codec[A], col weir_udf_types.BytesColumn) ([]A, error) {
	n := max(len(col.Offsets)-1, 0)
	accs := make([]A, n)
	for i := range n {
		a, err := codec.Decode(cell(&col, i))
		if err != nil {
			return nil, err
		}
		accs[i] = a
	}
	return accs, nil
}

func encodeAll[A any](codec Codec[A], accs []A) weir_udf_types.BytesColumn {
	parts := make([][]byte, len(accs))
	for i, a := range accs {
		parts[i] = codec.Encode(a)
	}
	return Column(parts)
}

// RegisterAggregate registers the operator of an aggregate-operator component.
func RegisterAggregate[A any](op Aggregate[A], codec Codec[A]) {
	Operator = op
	aggregateOp.create = func() ([]byte, error) { return codec.Encode(op.CreateAccumulator()), nil }
	aggregateOp.add = func(col weir_udf_types.BytesColumn, groups []uint32, b weir_udf_types.Batch) (weir_udf_types.BytesColumn, error) {
		accs, err := decodeAll(codec, col)
		if err != nil {
			return weir_udf_types.BytesColumn{}, err
		}
		for i := range Rows(&b) {
			g := groups[i]
			if int(g) >= len(accs) {
				return weir_udf_types.BytesColumn{}, Errorf(Failed, "row %d names accumulator %d of %d", i, g, len(accs))
			}
			if err := op.Add(&accs[g], RecordAt(&b, i)); err != nil {
				return weir_udf_types.BytesColumn{}, err
			}
		}
		return encodeAll(codec, accs), nil
	}
	aggregateOp.merge = func(col weir_udf_types.BytesColumn, groups []uint32) (weir_udf_types.BytesColumn, error) {
		accs, err := decodeAll(codec, col)
		if err != nil {
			return weir_udf_types.BytesColumn{}, err
		}
		var merged []A
		seen := []bool{}
		for i, a := range accs {
			g := int(groups[i])
			for len(merged) <= g {
				var zero A
				merged, seen = append(merged, zero), append(seen, false)
			}
			if !seen[g] {
				merged[g], seen[g] = a, true
			} else if err := op.Merge(&merged[g], a); err != nil {
				return weir_udf_types.BytesColumn{}, err
			}
		}
		return encodeAll(codec, merged), nil
	}
	aggregateOp.result = func(acc []byte, pane Pane, out *Output) error {
		a, err := codec.Decode(acc)
		if err != nil {
			return err
		}
		return op.Result(a, pane, out)
	}
}

// CallCreateAccumulator is the glue of `create-accumulator`.
func CallCreateAccumulator() witTypes.Result[[]uint8, weir_udf_types.Error] {
	b, err := aggregateOp.create()
	if err != nil {
		return witTypes.Err[[]uint8](WitError(err))
	}
	return witTypes.Ok[[]uint8, weir_udf_types.Error](b)
}

// CallAdd is the glue of `add`.
func CallAdd(accs weir_udf_types.BytesColumn, groups []uint32, b weir_udf_types.Batch) witTypes.Result[weir_udf_types.BytesColumn, weir_udf_types.Error] {
	col, err := aggregateOp.add(accs, groups, b)
	if err != nil {
		return witTypes.Err[weir_udf_types.BytesColumn](WitError(err))
	}
	return witTypes.Ok[weir_udf_types.BytesColumn, weir_udf_types.Error](col)
}

// CallMerge is the glue of `merge`.
func CallMerge(accs weir_udf_types.BytesColumn, groups []uint32) witTypes.Result[weir_udf_types.BytesColumn, weir_udf_types.Error] {
	col, err := aggregateOp.merge(accs, groups)
	if err != nil {
		return witTypes.Err[weir_udf_types.BytesColumn](WitError(err))
	}
	return witTypes.Ok[weir_udf_types.BytesColumn, weir_udf_types.Error](col)
}

// CallResult is the glue of `get-results`, one pane at a time.
func CallResult(out *Output, i int, key, acc []byte, start, end int64) error {
	out.Begin(i, key, end-1)
	return aggregateOp.result(acc, Pane{Key: key, Start: start, End: end}, out)
}
