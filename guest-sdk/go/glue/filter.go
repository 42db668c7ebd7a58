// Glue of the filter-operator world: the exports wit-bindgen's bindings
// call, forwarded to the registered operator.
package export_weir_udf_filter

import (
	"wit_component/weir"
	"wit_component/weir_udf_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.Init(weir.Operator, config)
}

func Filter(input weir_udf_types.Batch) witTypes.Result[[]uint32, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.CallFilter(input)
}
