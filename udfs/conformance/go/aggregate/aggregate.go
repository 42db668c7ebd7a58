// Conformance `aggregate` in Go (udfs/conformance/README.md).
package main

import (
	"bytes"
	"fmt"
	"strconv"

	"wit_component/weir"
)

// Stats is stored as three little-endian int64, as in every language.
type Stats struct{ Count, Sum, Max int64 }

type Aggregate struct{}

func (Aggregate) CreateAccumulator() Stats { return Stats{} }

func (Aggregate) Add(acc *Stats, r weir.Record) error {
	head, _, _ := bytes.Cut(r.Value, []byte(" "))
	n, err := strconv.ParseInt(string(head), 10, 64)
	if err != nil {
		return weir.Errorf(weir.InvalidRecord, "record %d: value has no amount", r.Index)
	}
	acc.Count++
	acc.Sum += n
	acc.Max = max(acc.Max, n)
	return nil
}

func (Aggregate) Merge(acc *Stats, o Stats) error {
	acc.Count += o.Count
	acc.Sum += o.Sum
	acc.Max = max(acc.Max, o.Max)
	return nil
}

func (Aggregate) Result(acc Stats, p weir.Pane, out *weir.Output) error {
	out.EmitString(fmt.Sprintf("%s %d %d count=%d sum=%d max=%d", p.Key, p.Start, p.End, acc.Count, acc.Sum, acc.Max))
	return nil
}

func init() { weir.RegisterAggregate[Stats](Aggregate{}, weir.Binary[Stats]()) }
