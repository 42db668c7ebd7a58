//! weir — write weir stream operators in Zig.
//!
//! Your operator is a Zig file (`app.zig`) that imports this module and
//! declares the functions of its world; `weir udf build` compiles it with the
//! SDK's glue into a component:
//!
//!     const weir = @import("weir");
//!
//!     var min: i64 = 50;
//!
//!     pub fn init(config: weir.Config) !void {
//!         min = try config.int("min", 50);
//!     }
//!
//!     pub fn keep(record: weir.Record) !bool {
//!         return (try weir.parseAmount(record.value)) >= min;
//!     }
//!
//! Per world (udf.toml `world`):
//! * `filter-operator`: `pub fn keep(record: weir.Record) !bool`
//! * `map-operator`: `pub fn map(record: weir.Record, out: weir.Output) !void`
//!   (emit exactly one row)
//! * `flat-map-operator`: `pub fn flatMap(record: weir.Record, out: weir.Output) !void`
//! * `aggregate-operator`: `pub const Accumulator = extern struct {…}` (its
//!   default field values are the empty accumulator; the host stores its
//!   bytes), `pub fn add(acc: *Accumulator, record: weir.Record) !void`,
//!   `pub fn merge(acc: *Accumulator, other: *const Accumulator) !void`,
//!   `pub fn result(acc: *const Accumulator, pane: weir.Pane, out: weir.Output) !void`
//! * `keyed-process-operator`: `pub fn process(ctx: weir.Keyed, record: weir.Record) !void`
//!   and `pub fn onTimer(ctx: weir.Keyed, timer: weir.Timer) !void`; state
//!   and timers are in `weir.state` and `weir.timers`.
//! * every world: optionally `pub fn init(config: weir.Config) !void`.
//!
//! Return `weir.fail(.invalid_record, "…", .{…})` to fail with a message;
//! any other error fails the job with its name. Slices the SDK gives you are
//! valid during the call only; `weir.Buf` values you own are freed with
//! `deinit`.
//!
//! Underneath is the C SDK (guest-sdk/c/weir_udf.h), which converts the
//! host's columnar batches; this module only gives it a Zig face.

const std = @import("std");
/// The C SDK (weir_udf.h), translated by `zig translate-c` at build time.
pub const c = @import("weir_c");

/// Why an operator call failed.
pub const ErrorKind = enum(c_uint) {
    invalid_config = c.WEIR_INVALID_CONFIG,
    invalid_record = c.WEIR_INVALID_RECORD,
    failed = c.WEIR_FAILED,
};

/// The error `fail` returns: the message is already recorded.
pub const Error = error{OperatorFailed};

/// Records a message (std.fmt syntax) and returns `error.OperatorFailed`.
pub fn fail(kind: ErrorKind, comptime fmt: []const u8, args: anytype) Error {
    var buf: [1024]u8 = undefined;
    const msg = std.fmt.bufPrint(&buf, fmt, args) catch buf[0..];
    _ = c.weir_error(@intFromEnum(kind), "%.*s", @as(c_int, @intCast(msg.len)), msg.ptr);
    return error.OperatorFailed;
}

fn bytes(b: c.weir_bytes) []const u8 {
    if (b.len == 0) return &.{};
    return b.ptr[0..b.len];
}

/// One input record.
pub const Record = struct {
    /// Row of the record in its batch.
    index: usize,
    /// Key (empty if none) and value.
    key: []const u8,
    value: []const u8,
    /// Event time, ms since the Unix epoch.
    timestamp: i64,
    raw: *const c.weir_record,

    pub fn from(raw: *const c.weir_record) Record {
        return .{ .index = raw.index, .key = bytes(raw.key), .value = bytes(raw.value), .timestamp = raw.timestamp, .raw = raw };
    }

    /// The value of the first header called `name`.
    pub fn header(self: Record, name: [:0]const u8) ?[]const u8 {
        var v: c.weir_bytes = undefined;
        if (!c.weir_record_header(self.raw, name.ptr, &v)) return null;
        return bytes(v);
    }
};

/// Parses the decimal integer at the start of `text`.
pub fn parseAmount(text: []const u8) Error!i64 {
    var v: i64 = 0;
    if (!c.weir_parse_i64(.{ .ptr = text.ptr, .len = text.len }, &v, null))
        return fail(.invalid_record, "value `{s}` does not start with a number", .{text});
    return v;
}

/// The operator's `config` table from the job file, as strings.
pub const Config = struct {
    raw: *const c.weir_config,

    /// The raw string of `key`.
    pub fn get(self: Config, key: [:0]const u8) ?[]const u8 {
        const v = c.weir_config_get(self.raw, key.ptr) orelse return null;
        return std.mem.span(v);
    }

    /// `key` as an integer, or `default`; a bad value is a config error.
    pub fn int(self: Config, key: [:0]const u8, default: i64) Error!i64 {
        var v: i64 = 0;
        if (c.weir_config_int(self.raw, key.ptr, default, &v) != c.WEIR_OK) return error.OperatorFailed;
        return v;
    }
};

/// Where a map, flat-map or window result writes its rows.
pub const Output = struct {
    raw: *c.weir_output,

    /// Emits a row; it keeps the key and time of the record (or pane).
    pub fn emit(self: Output, value: []const u8) void {
        c.weir_emit(self.raw, value.ptr, value.len);
    }

    /// Emits a row formatted with std.fmt.
    pub fn print(self: Output, comptime fmt: []const u8, args: anytype) !void {
        const text = try std.fmt.allocPrint(std.heap.c_allocator, fmt, args);
        defer std.heap.c_allocator.free(text);
        self.emit(text);
    }

    /// Sets the key of the row emitted last.
    pub fn setKey(self: Output, key: []const u8) void {
        c.weir_set_key(self.raw, key.ptr, key.len);
    }

    /// Sets the event time of the row emitted last.
    pub fn setTimestamp(self: Output, timestamp: i64) void {
        c.weir_set_timestamp(self.raw, timestamp);
    }
};

/// A fired pane: one window of one key.
pub const Pane = struct {
    key: []const u8,
    start: i64,
    end: i64,
};

/// A timer that fired.
pub const Timer = struct {
    timestamp: i64,
    domain: enum { event_time, processing_time },
};

/// The keyed call in progress: its key, and what it emits.
pub const Keyed = struct {
    raw: *c.weir_keyed,

    /// The current key.
    pub fn key(self: Keyed) []const u8 {
        return bytes(c.weir_current_key(self.raw));
    }

    /// Emits a row to the main output.
    pub fn emit(self: Keyed, value: []const u8, timestamp: i64) void {
        c.weir_keyed_emit(self.raw, value.ptr, value.len, timestamp);
    }

    /// Emits a row formatted with std.fmt to the main output.
    pub fn print(self: Keyed, timestamp: i64, comptime fmt: []const u8, args: anytype) !void {
        const text = try std.fmt.allocPrint(std.heap.c_allocator, fmt, args);
        defer std.heap.c_allocator.free(text);
        self.emit(text, timestamp);
    }

    /// Emits a row to the side output `name` (declared in the job file).
    pub fn emitSide(self: Keyed, name: [:0]const u8, value: []const u8, timestamp: i64) void {
        c.weir_keyed_emit_side(self.raw, name.ptr, value.ptr, value.len, timestamp);
    }
};

/// Bytes the host gave you: free with `deinit`.
pub const Buf = struct {
    raw: c.weir_buf,

    pub fn slice(self: Buf) []const u8 {
        if (self.raw.len == 0) return &.{};
        return self.raw.ptr[0..self.raw.len];
    }

    pub fn deinit(self: *Buf) void {
        c.weir_buf_free(&self.raw);
    }
};

/// Keyed state of the current key (keyed-process-operator only).
pub const state = struct {
    pub fn valueGet(name: [:0]const u8) ?Buf {
        var b: c.weir_buf = undefined;
        if (!c.weir_value_get(name.ptr, &b)) return null;
        return .{ .raw = b };
    }
    pub fn valueSet(name: [:0]const u8, value: []const u8) void {
        c.weir_value_set(name.ptr, value.ptr, value.len);
    }
    /// Value state holding a little-endian i64.
    pub fn valueGetInt(name: [:0]const u8) ?i64 {
        var v: i64 = 0;
        if (!c.weir_value_get_i64(name.ptr, &v)) return null;
        return v;
    }
    pub fn valueSetInt(name: [:0]const u8, value: i64) void {
        c.weir_value_set_i64(name.ptr, value);
    }

    /// A list state's elements: `items()`, then `deinit`.
    pub const List = struct {
        raw: c.weir_list,
        pub fn len(self: List) usize {
            return self.raw.len;
        }
        pub fn get(self: List, i: usize) []const u8 {
            const b = self.raw.items[i];
            if (b.len == 0) return &.{};
            return b.ptr[0..b.len];
        }
        pub fn deinit(self: *List) void {
            c.weir_list_free(&self.raw);
        }
    };
    pub fn listGet(name: [:0]const u8) List {
        return .{ .raw = c.weir_list_get(name.ptr) };
    }
    pub fn listAdd(name: [:0]const u8, value: []const u8) void {
        c.weir_list_add(name.ptr, value.ptr, value.len);
    }
    /// Replaces a list state's elements.
    pub fn listSet(name: [:0]const u8, values: []const []const u8) !void {
        const items = try std.heap.c_allocator.alloc(c.weir_buf, values.len);
        defer std.heap.c_allocator.free(items);
        for (values, items) |v, *item| item.* = .{ .ptr = @constCast(v.ptr), .len = v.len };
        c.weir_list_set(name.ptr, items.ptr, items.len);
    }

    /// A map state's entries, ordered by key bytes: `key(i)`, `value(i)`.
    pub const Entries = struct {
        raw: c.weir_entries,
        pub fn len(self: Entries) usize {
            return self.raw.len;
        }
        pub fn key(self: Entries, i: usize) []const u8 {
            const b = self.raw.items[i].key;
            if (b.len == 0) return &.{};
            return b.ptr[0..b.len];
        }
        pub fn value(self: Entries, i: usize) []const u8 {
            const b = self.raw.items[i].value;
            if (b.len == 0) return &.{};
            return b.ptr[0..b.len];
        }
        pub fn deinit(self: *Entries) void {
            c.weir_entries_free(&self.raw);
        }
    };
    pub fn mapGet(name: [:0]const u8, key: []const u8) ?Buf {
        var b: c.weir_buf = undefined;
        if (!c.weir_map_get(name.ptr, key.ptr, key.len, &b)) return null;
        return .{ .raw = b };
    }
    pub fn mapPut(name: [:0]const u8, key: []const u8, value: []const u8) void {
        c.weir_map_put(name.ptr, key.ptr, key.len, value.ptr, value.len);
    }
    pub fn mapRemove(name: [:0]const u8, key: []const u8) void {
        c.weir_map_remove(name.ptr, key.ptr, key.len);
    }
    pub fn mapEntries(name: [:0]const u8) Entries {
        return .{ .raw = c.weir_map_entries(name.ptr) };
    }
    pub fn clear(name: [:0]const u8) void {
        c.weir_clear(name.ptr);
    }
};

/// Timers and clocks of the current key (keyed-process-operator only).
pub const timers = struct {
    pub fn registerEventTimer(timestamp: i64) void {
        c.weir_register_event_timer(timestamp);
    }
    pub fn registerProcessingTimer(timestamp: i64) void {
        c.weir_register_processing_timer(timestamp);
    }
    pub fn deleteEventTimer(timestamp: i64) void {
        c.weir_delete_event_timer(timestamp);
    }
    pub fn deleteProcessingTimer(timestamp: i64) void {
        c.weir_delete_processing_timer(timestamp);
    }
    pub fn currentWatermark() i64 {
        return c.weir_current_watermark();
    }
    pub fn currentProcessingTime() i64 {
        return c.weir_current_processing_time();
    }
};

/// Writes to the host's log.
pub fn log(level: enum(c_uint) { trace, debug, info, warn, err }, comptime fmt: []const u8, args: anytype) void {
    var buf: [1024]u8 = undefined;
    const msg = std.fmt.bufPrint(&buf, fmt, args) catch buf[0..];
    c.weir_log(@intFromEnum(level), "%.*s", @as(c_int, @intCast(msg.len)), msg.ptr);
}

/// Turns a Zig error into the C SDK's status (the message of `fail` is
/// already recorded; other errors are named).
pub fn status(result: anyerror!void) c.weir_status {
    result catch |e| {
        if (e == error.OperatorFailed) return c.WEIR_ERROR;
        const name = @errorName(e);
        return c.weir_error(c.WEIR_FAILED, "error.%.*s", @as(c_int, @intCast(name.len)), name.ptr);
    };
    return c.WEIR_OK;
}
