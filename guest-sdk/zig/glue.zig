//! The root of a Zig operator: exports the C SDK's callbacks for whatever
//! the operator (`app`) declares. Built by `weir udf build`.

const weir = @import("weir");
const app = @import("app");
const c = weir.c;

fn initGlue(config: ?*const c.weir_config) callconv(.c) c.weir_status {
    return weir.status(app.init(.{ .raw = config.? }));
}

fn filterGlue(record: ?*const c.weir_record, keep: ?*bool) callconv(.c) c.weir_status {
    const k = app.keep(weir.Record.from(record.?)) catch |e| return weir.status(e);
    keep.?.* = k;
    return c.WEIR_OK;
}

fn mapGlue(record: ?*const c.weir_record, out: ?*c.weir_output) callconv(.c) c.weir_status {
    return weir.status(app.map(weir.Record.from(record.?), .{ .raw = out.? }));
}

fn flatMapGlue(record: ?*const c.weir_record, out: ?*c.weir_output) callconv(.c) c.weir_status {
    return weir.status(app.flatMap(weir.Record.from(record.?), .{ .raw = out.? }));
}

fn acc(p: ?*anyopaque) *app.Accumulator {
    return @ptrCast(@alignCast(p.?));
}

fn createGlue(p: ?*anyopaque) callconv(.c) c.weir_status {
    acc(p).* = .{};
    return c.WEIR_OK;
}

fn addGlue(p: ?*anyopaque, record: ?*const c.weir_record) callconv(.c) c.weir_status {
    return weir.status(app.add(acc(p), weir.Record.from(record.?)));
}

fn mergeGlue(p: ?*anyopaque, other: ?*const anyopaque) callconv(.c) c.weir_status {
    return weir.status(app.merge(acc(p), @ptrCast(@alignCast(other.?))));
}

fn resultGlue(p: ?*const anyopaque, pane: ?*const c.weir_pane, out: ?*c.weir_output) callconv(.c) c.weir_status {
    const pn = pane.?;
    const key: []const u8 = if (pn.key.len == 0) &.{} else pn.key.ptr[0..pn.key.len];
    return weir.status(app.result(@ptrCast(@alignCast(p.?)), .{ .key = key, .start = pn.start, .end = pn.end }, .{ .raw = out.? }));
}

fn processGlue(ctx: ?*c.weir_keyed, record: ?*const c.weir_record) callconv(.c) c.weir_status {
    return weir.status(app.process(.{ .raw = ctx.? }, weir.Record.from(record.?)));
}

fn onTimerGlue(ctx: ?*c.weir_keyed, timestamp: i64, domain: c.weir_time_domain) callconv(.c) c.weir_status {
    const timer: weir.Timer = .{ .timestamp = timestamp, .domain = if (domain == c.WEIR_EVENT_TIME) .event_time else .processing_time };
    return weir.status(app.onTimer(.{ .raw = ctx.? }, timer));
}

comptime {
    if (@hasDecl(app, "init")) @export(&initGlue, .{ .name = "weir_init" });
    if (@hasDecl(app, "keep")) @export(&filterGlue, .{ .name = "weir_filter" });
    if (@hasDecl(app, "map")) @export(&mapGlue, .{ .name = "weir_map" });
    if (@hasDecl(app, "flatMap")) @export(&flatMapGlue, .{ .name = "weir_flat_map" });
    if (@hasDecl(app, "Accumulator")) {
        @export(&@as(usize, @sizeOf(app.Accumulator)), .{ .name = "weir_accumulator_size" });
        @export(&createGlue, .{ .name = "weir_create_accumulator" });
        @export(&addGlue, .{ .name = "weir_add" });
        @export(&mergeGlue, .{ .name = "weir_merge" });
        @export(&resultGlue, .{ .name = "weir_get_result" });
    }
    if (@hasDecl(app, "process")) @export(&processGlue, .{ .name = "weir_process" });
    if (@hasDecl(app, "onTimer")) @export(&onTimerGlue, .{ .name = "weir_on_timer" });
}
