//! Conformance `keyed` in Zig (udfs/conformance/README.md): value, list and
//! map state, event-time timers and a side output.
const std = @import("std");
const weir = @import("weir");

const alloc = std.heap.c_allocator;

pub fn process(ctx: weir.Keyed, record: weir.Record) !void {
    const amount = try weir.parseAmount(record.value);
    const t = record.timestamp;
    const bucket = t - @mod(t, 10_000) + 9_999;

    const total = (weir.state.valueGetInt("total") orelse 0) + amount;
    weir.state.valueSetInt("total", total);

    var buf: [64]u8 = undefined;
    weir.state.listAdd("amounts", try std.fmt.bufPrint(&buf, "{d}:{d}", .{ bucket, amount }));

    var words = std.mem.splitScalar(u8, record.value, ' ');
    _ = words.next();
    while (words.next()) |word| {
        const key = try std.fmt.allocPrint(alloc, "{d}/{s}", .{ bucket, word });
        defer alloc.free(key);
        var count: i64 = 0;
        if (weir.state.mapGet("words", key)) |old| {
            var o = old;
            defer o.deinit();
            count = try std.fmt.parseInt(i64, o.slice(), 10);
        }
        weir.state.mapPut("words", key, try std.fmt.bufPrint(&buf, "{d}", .{count + 1}));
    }

    weir.timers.registerEventTimer(bucket);
    if (amount >= 90) try ctx.print(t, "big {d} total={d}", .{ amount, total });
    if (amount < 10) ctx.emitSide("small", try std.fmt.bufPrint(&buf, "small {d}", .{amount}), t);
}

pub fn onTimer(ctx: weir.Keyed, timer: weir.Timer) !void {
    var out: std.ArrayList(u8) = .empty;
    defer out.deinit(alloc);
    var buf: [64]u8 = undefined;
    try out.appendSlice(alloc, try std.fmt.bufPrint(&buf, "bucket {d} amounts=", .{timer.timestamp}));

    const prefix = try std.fmt.bufPrint(&buf, "{d}:", .{timer.timestamp});
    var amounts = weir.state.listGet("amounts");
    defer amounts.deinit();
    var rest: std.ArrayList([]const u8) = .empty;
    defer rest.deinit(alloc);
    var mine: usize = 0;
    for (0..amounts.len()) |i| {
        const a = amounts.get(i);
        if (std.mem.startsWith(u8, a, prefix)) {
            if (mine > 0) try out.append(alloc, ',');
            mine += 1;
            try out.appendSlice(alloc, a[prefix.len..]);
        } else {
            try rest.append(alloc, a);
        }
    }
    try weir.state.listSet("amounts", rest.items);

    try out.appendSlice(alloc, " words=");
    buf[prefix.len - 1] = '/';
    var entries = weir.state.mapEntries("words");
    defer entries.deinit();
    var seen: usize = 0;
    for (0..entries.len()) |i| {
        const key = entries.key(i);
        if (!std.mem.startsWith(u8, key, prefix)) continue;
        if (seen > 0) try out.append(alloc, ',');
        seen += 1;
        try out.appendSlice(alloc, key[prefix.len..]);
        try out.append(alloc, ':');
        try out.appendSlice(alloc, entries.value(i));
        weir.state.mapRemove("words", key);
    }
    ctx.emit(out.items, timer.timestamp);
}
