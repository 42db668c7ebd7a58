// Conformance `map` in Go (udfs/conformance/README.md).
package main

import (
	"bytes"
	"strconv"

	"wit_component/weir"
)

type Shout struct{}

func (Shout) Map(r weir.Record, out *weir.Output) error {
	head, words, _ := bytes.Cut(r.Value, []byte(" "))
	n, err := strconv.ParseInt(string(head), 10, 64)
	if err != nil {
		return weir.Errorf(weir.InvalidRecord, "record %d: value has no amount", r.Index)
	}
	out.Emitf("%s|%d|%s", r.Key, 2*n, bytes.ToUpper(words))
	return nil
}

func init() { weir.RegisterMap(Shout{}) }
