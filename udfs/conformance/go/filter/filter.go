// Conformance `filter` in Go (udfs/conformance/README.md).
package main

import (
	"bytes"
	"strconv"

	"wit_component/weir"
)

type MinAmount struct{ min int64 }

func (m *MinAmount) Init(c weir.Config) (err error) {
	m.min, err = c.Int("min", 50)
	return
}

// amount is the number at the start of a conformance value.
func amount(r weir.Record) (int64, error) {
	head, _, _ := bytes.Cut(r.Value, []byte(" "))
	n, err := strconv.ParseInt(string(head), 10, 64)
	if err != nil {
		return 0, weir.Errorf(weir.InvalidRecord, "record %d: value has no amount", r.Index)
	}
	return n, nil
}

func (m *MinAmount) Keep(r weir.Record) (bool, error) {
	n, err := amount(r)
	return n >= m.min, err
}

func init() { weir.RegisterFilter(&MinAmount{}) }
