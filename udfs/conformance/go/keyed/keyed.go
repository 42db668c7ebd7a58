// Conformance `keyed` in Go (udfs/conformance/README.md): value, list and
// map state, event-time timers and a side output.
package main

import (
	"fmt"
	"strconv"
	"strings"

	"wit_component/weir"
	"wit_component/weir/keyed"
)

type Buckets struct {
	total   *keyed.ValueState[int64]
	amounts *keyed.ListState[string]
	words   *keyed.MapState[string, string]
}

func (b *Buckets) Process(ctx *keyed.Context, r weir.Record) error {
	parts := strings.Split(string(r.Value), " ")
	amount, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return weir.Errorf(weir.InvalidRecord, "record %d: value has no amount", r.Index)
	}
	t := r.Timestamp
	bucket := t - ((t%10_000)+10_000)%10_000 + 9_999

	total, _, err := b.total.Get()
	if err != nil {
		return err
	}
	total += amount
	b.total.Set(total)
	b.amounts.Add(fmt.Sprintf("%d:%d", bucket, amount))
	for _, w := range parts[1:] {
		key := fmt.Sprintf("%d/%s", bucket, w)
		old, _, err := b.words.Get(key)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(old)
		b.words.Put(key, strconv.Itoa(n+1))
	}
	ctx.RegisterEventTimer(bucket)
	if amount >= 90 {
		ctx.Emitf(t, "big %d total=%d", amount, total)
	}
	if amount < 10 {
		ctx.EmitSide("small", fmt.Appendf(nil, "small %d", amount), t)
	}
	return nil
}

func (b *Buckets) OnTimer(ctx *keyed.Context, timer keyed.Timer) error {
	t := timer.Timestamp
	prefix := fmt.Sprintf("%d:", t)
	all, err := b.amounts.Get()
	if err != nil {
		return err
	}
	var mine, rest []string
	for _, a := range all {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			mine = append(mine, v)
		} else {
			rest = append(rest, a)
		}
	}
	b.amounts.Set(rest)
	prefix = fmt.Sprintf("%d/", t)
	entries, err := b.words.Entries()
	if err != nil {
		return err
	}
	var words []string
	for _, e := range entries {
		if w, ok := strings.CutPrefix(e.Key, prefix); ok {
			words = append(words, w+":"+e.Value)
			b.words.Remove(e.Key)
		}
	}
	ctx.Emitf(t, "bucket %d amounts=%s words=%s", t, strings.Join(mine, ","), strings.Join(words, ","))
	return nil
}

func init() {
	keyed.Register(&Buckets{
		total:   keyed.NewValueState("total", weir.Int64),
		amounts: keyed.NewListState("amounts", weir.String),
		words:   keyed.NewMapState("words", weir.String, weir.String),
	})
}
