// Glue of the keyed-process-operator world.
package export_weir_udf_keyed_processor

import (
	"wit_component/weir"
	"wit_component/weir/keyed"
	"wit_component/weir_udf_keyed_processor"
	"wit_component/weir_udf_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

func Init(config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, weir_udf_types.Error] {
	defer weir.Collect()
	return weir.Init(weir.Operator, config)
}

func Process(key []uint8, records weir_udf_types.Batch) witTypes.Result[weir_udf_keyed_processor.Emitted, weir_udf_types.Error] {
	defer weir.Collect()
	return keyed.CallProcess(key, records)
}

func OnTimer(key []uint8, timers []weir_udf_keyed_processor.Timer) witTypes.Result[weir_udf_keyed_processor.Emitted, weir_udf_types.Error] {
	defer weir.Collect()
	return keyed.CallOnTimer(key, timers)
}
