// Glue of the map-operator world.
package export_weir_udf_mapper

import (
	"wit_component/weir"
	"wit_component/weir_udf_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.Init(weir.Operator, config)
}

func MapBatch(input weir_udf_types.Batch) witTypes.Result[weir_udf_types.Output, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.CallMap(input, false)
}
