//! Conformance `filter` in Zig (udfs/conformance/README.md).
const weir = @import("weir");

var min: i64 = 50;

pub fn init(config: weir.Config) !void {
    min = try config.int("min", 50);
}

pub fn keep(record: weir.Record) !bool {
    return (try weir.parseAmount(record.value)) >= min;
}
