// Glue of the aggregate-operator world.
package export_weir_udf_aggregator

import (
	"wit_component/weir"
	"wit_component/weir_udf_aggregator"
	"wit_component/weir_udf_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.Init(weir.Operator, config)
}

func CreateAccumulator() witTypes.Result[[]uint8, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.CallCreateAccumulator()
}

func Add(accumulators weir_udf_types.BytesColumn, groups []uint32, records weir_udf_types.Batch) witTypes.Result[weir_udf_types.BytesColumn, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.CallAdd(accumulators, groups, records)
}

func Merge(accumulators weir_udf_types.BytesColumn, groups []uint32) witTypes.Result[weir_udf_types.BytesColumn, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.CallMerge(accumulators, groups)
}

func GetResults(panes []weir_udf_aggregator.FiredPane) witTypes.Result[weir_udf_types.Output, weir_udf_types.Error] {
	defer weir.Collect()
	out := weir.NewOutput()
	for i, p := range panes {
		if err := weir.CallResult(out, i, p.Key, p.Accumulator, p.Window.Start, p.Window.End); err != nil {
			return witTypes.Err[weir_udf_types.Output](weir.WitError(err))
		}
	}
	return witTypes.Ok[weir_udf_types.Output, weir_udf_types.Error](out.Finish(false))
}
