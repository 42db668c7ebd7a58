//! Conformance `aggregate` in Zig (udfs/conformance/README.md).
const weir = @import("weir");

pub const Accumulator = extern struct {
    count: i64 = 0,
    sum: i64 = 0,
    max: i64 = 0,
};

pub fn add(acc: *Accumulator, record: weir.Record) !void {
    const amount = try weir.parseAmount(record.value);
    acc.count += 1;
    acc.sum += amount;
    acc.max = @max(acc.max, amount);
}

pub fn merge(acc: *Accumulator, other: *const Accumulator) !void {
    acc.count += other.count;
    acc.sum += other.sum;
    acc.max = @max(acc.max, other.max);
}

pub fn result(acc: *const Accumulator, pane: weir.Pane, out: weir.Output) !void {
    try out.print("{s} {d} {d} count={d} sum={d} max={d}", .{ pane.key, pane.start, pane.end, acc.count, acc.sum, acc.max });
}
