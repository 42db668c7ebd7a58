//! Conformance `flat-map` in Zig (udfs/conformance/README.md).
const std = @import("std");
const weir = @import("weir");

pub fn flatMap(record: weir.Record, out: weir.Output) !void {
    var words = std.mem.splitScalar(u8, record.value, ' ');
    _ = words.next(); // the amount
    var i: i64 = 0;
    while (words.next()) |word| : (i += 1) {
        out.emit(word);
        out.setKey(word);
        out.setTimestamp(record.timestamp + i);
    }
}
