//! A keyed-process guest that misuses the host on purpose, for the tests of
//! what the host reports. `config.mode`:
//! * `kind-mismatch` — uses state `x` as value state, then as list state;
//! * `undeclared-side` — emits to side output `nope`;
//! * `timer-trap` — sets a timer and panics when it fires;
//! * `processing-timer` — sets a processing-time timer 1 s after the clock
//!   and, when it fires, emits `fired <timestamp> <domain>` (a well-behaved
//!   mode, for the processing-time tests);
//! * anything else — passes records through.
//!
//! World: `keyed-process-operator` (`wit/keyed.wit`).

use weir_udf::state::{ListState, ValueState};
use weir_udf::{Config, Context, Error, KeyedProcess, Record, Timer};

/// The misbehaving operator.
pub struct KeyedMisbehave {
    mode: String,
}

impl KeyedProcess for KeyedMisbehave {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            mode: config.get("mode").unwrap_or("pass").to_string(),
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error> {
        match self.mode.as_str() {
            "kind-mismatch" => {
                ValueState::<u64>::new("x").set(&1);
                ListState::<u64>::new("x").add(&2);
            }
            "undeclared-side" => ctx.emit_side("nope", record.value(), record.timestamp()),
            "timer-trap" => ctx.register_event_timer(record.timestamp()),
            "processing-timer" => {
                ctx.register_processing_timer(ctx.current_processing_time() + 1_000);
            }
            _ => ctx.emit(record.value(), record.timestamp()),
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), Error> {
        if self.mode == "processing-timer" {
            let text = format!("fired {} {:?}", timer.timestamp, timer.domain);
            ctx.emit(text.as_bytes(), timer.timestamp);
            return Ok(());
        }
        panic!("timer at {} went off", timer.timestamp);
    }
}

weir_udf::export_keyed_process!(KeyedMisbehave);
