// Conformance `flat-map` in Go (udfs/conformance/README.md).
package main

import (
	"bytes"

	"wit_component/weir"
)

type Words struct{}

func (Words) FlatMap(r weir.Record, out *weir.Output) error {
	for i, w := range bytes.Split(r.Value, []byte(" "))[1:] {
		out.Emit(w)
		out.SetKey(w)
		out.SetTimestamp(r.Timestamp + int64(i))
	}
	return nil
}

func init() { weir.RegisterFlatMap(Words{}) }
