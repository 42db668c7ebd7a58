//! A deliberately badly behaved operator, for the tests of the sandbox: it
//! passes records through unchanged until it meets a record whose value
//! contains `trigger` (default `"boom"`), then does what `mode` says:
//!
//! * `trap` — panics with a message naming the record;
//! * `spin` — loops forever (the CPU deadline must stop it);
//! * `hog` — allocates memory without end (the memory cap must stop it);
//! * `error` — returns an error value.
//!
//! World: `map-operator`.

use weir_udf::{Config, Error, Map, Record, RowWriter};

/// What to do on the trigger.
#[derive(Clone, Copy)]
enum Mode {
    Trap,
    Spin,
    Hog,
    Fail,
}

/// The misbehaving operator.
pub struct Misbehave {
    mode: Mode,
    trigger: Vec<u8>,
    hoard: Vec<Vec<u8>>,
}

impl Map for Misbehave {
    fn init(config: &Config) -> Result<Self, Error> {
        let mode = match config.get("mode").unwrap_or("trap") {
            "trap" => Mode::Trap,
            "spin" => Mode::Spin,
            "hog" => Mode::Hog,
            "error" => Mode::Fail,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown `mode` {other:?}; expected trap, spin, hog or error"
                )));
            }
        };
        let trigger = config.get("trigger").unwrap_or("boom").as_bytes().to_vec();
        Ok(Self {
            mode,
            trigger,
            hoard: Vec::new(),
        })
    }

    fn map(&mut self, record: &Record<'_>, row: &mut RowWriter<'_, '_>) -> Result<(), Error> {
        let v = record.value();
        if !self.trigger.is_empty() && v.windows(self.trigger.len()).any(|w| w == self.trigger) {
            match self.mode {
                Mode::Trap => panic!("misbehave: refusing record {} on purpose", record.index()),
                Mode::Spin => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                Mode::Hog => loop {
                    let mut chunk = vec![1u8; 4 << 20];
                    chunk[0] = std::hint::black_box(2);
                    self.hoard.push(chunk);
                },
                Mode::Fail => {
                    return Err(Error::InvalidRecord(format!(
                        "misbehave: record {} is unacceptable",
                        record.index()
                    )));
                }
            }
        }
        row.value(v);
        Ok(())
    }
}

weir_udf::export_map!(Misbehave);
