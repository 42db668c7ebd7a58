//! Conformance `map` in Zig (udfs/conformance/README.md).
const std = @import("std");
const weir = @import("weir");

pub fn map(record: weir.Record, out: weir.Output) !void {
    const amount = try weir.parseAmount(record.value);
    const space = std.mem.indexOfScalar(u8, record.value, ' ');
    const words = if (space) |i| record.value[i + 1 ..] else "";
    const upper = try std.ascii.allocUpperString(std.heap.c_allocator, words);
    defer std.heap.c_allocator.free(upper);
    try out.print("{s}|{d}|{s}", .{ record.key, 2 * amount, upper });
}
