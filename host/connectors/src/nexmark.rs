//! The Nexmark event generator as a source.
//!
//! Events are the people, auctions and bids of an online auction site, the
//! standard benchmark of stream processors. Each record's value is the event
//! as JSON (the fields of the `nexmark` crate's `Person`, `Auction` or `Bid`),
//! its key the auction id (bids), auction id (auctions) or person id
//! (people), its timestamp the event's `date_time`, and a header
//! `nexmark.type` says which of the three it is.
//!
//! Subtask `i` of `n` generates events `i, i + n, i + 2n, …`: the splits are
//! disjoint and together are exactly the sequence one generator would produce.

use std::time::{Instant, SystemTime, UNIX_EPOCH};
use weir_record::codec::Reader;

use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use serde::Deserialize;
use weir_engine::{BoxError, Source, SourceFactory, SubtaskInfo};
use weir_record::{BatchBuilder, DEFAULT_BATCH_ROWS, RecordBatch};

use crate::pacing::Pacer;

/// Which events to generate.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NexmarkEventType {
    /// People registering.
    Person,
    /// Auctions opening.
    Auction,
    /// Bids.
    Bid,
}

/// Options of `kind = "nexmark"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkOptions {
    /// Number of events to generate (of the selected type, if one is set).
    pub events: u64,
    /// Only events of this type (the generator's natural mix otherwise:
    /// 1 person, 3 auctions, 46 bids in every 50 events).
    #[serde(default)]
    pub event_type: Option<NexmarkEventType>,
    /// Events per second over all subtasks; as fast as possible if unset.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Event time of the first event, ms since the epoch; fixed by default so
    /// runs are reproducible.
    #[serde(default = "default_base_time")]
    pub base_time: u64,
    /// Event time follows the wall clock: the first event is stamped with
    /// the time the job starts (instead of `base_time`) and the events are
    /// `1 / rate` s apart, so each is stamped with the moment it is due.
    /// What reaches a sink can then be compared with the clock (its event
    /// time lag, the latency `weir bench nexmark --rate` reports). Needs
    /// `rate`.
    #[serde(default)]
    pub real_time: bool,
    /// Records per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Parallel subtasks.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

fn default_base_time() -> u64 {
    1_767_225_600_000 // 2026-01-01T00:00:00Z
}

fn default_batch() -> usize {
    DEFAULT_BATCH_ROWS
}

/// Builds one generator split per subtask.
pub struct NexmarkSourceFactory {
    options: NexmarkOptions,
    /// With `real_time`: when the job started, on both clocks (ms since the
    /// epoch), the same for every subtask.
    start: Option<(Instant, u64)>,
}

/// Nexmark options asking for real time without a usable rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`real_time = true` needs `rate` (events per second, at least 1)")]
pub struct RealTimeWithoutRate;

impl NexmarkSourceFactory {
    /// A factory for `options`.
    ///
    /// # Errors
    /// `real_time` without a `rate` of at least one event per second.
    pub fn new(options: NexmarkOptions) -> Result<Self, RealTimeWithoutRate> {
        let start = if options.real_time {
            match options.rate {
                Some(r) if r >= 1.0 => {}
                _ => return Err(RealTimeWithoutRate),
            }
            let epoch_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Some((Instant::now(), epoch_ms))
        } else {
            None
        };
        Ok(Self { options, start })
    }
}

impl SourceFactory for NexmarkSourceFactory {
    fn create(&self, info: &SubtaskInfo) -> Result<Box<dyn Source>, BoxError> {
        let produced = match info.restored_state()? {
            Some(s) if !s.operator.is_empty() => {
                Reader::new("Nexmark source position", &s.operator).u64("events produced")?
            }
            _ => 0,
        };
        Ok(Box::new(self.split(info, produced)?))
    }
}

impl NexmarkSourceFactory {
    /// Subtask `info`'s split, resuming after the `produced` events it
    /// already produced (restored: regenerated and dropped, the generator is
    /// deterministic, so this is the same sequence).
    fn split(&self, info: &SubtaskInfo, produced: u64) -> Result<NexmarkSource, BoxError> {
        let n = info.parallelism as u64;
        let i = info.subtask as u64;
        // Events i, i+n, … below `events`.
        let mine = self.options.events.saturating_sub(i).div_ceil(n);
        let produced = produced.min(mine);
        let generator_from = |base_time: u64| -> Result<EventGenerator, BoxError> {
            // `EventGenerator::default()` repeats one event forever; always
            // build it from a config.
            let mut config = NexmarkConfig {
                base_time,
                ..NexmarkConfig::default()
            };
            if let Some(rate) = self.options.rate.filter(|_| self.start.is_some()) {
                // One event every 1 / rate s of event time.
                config.first_rate = rate.round() as usize;
                config.next_rate = config.first_rate;
            }
            let mut generator = EventGenerator::new(config).with_offset(i).with_step(n);
            if let Some(t) = self.options.event_type {
                generator = generator.with_type_filter(match t {
                    NexmarkEventType::Person => EventType::Person,
                    NexmarkEventType::Auction => EventType::Auction,
                    NexmarkEventType::Bid => EventType::Bid,
                });
            }
            for _ in 0..produced {
                generator.next().ok_or("the Nexmark generator ended")?;
            }
            Ok(generator)
        };
        let generator = match self.start {
            None => generator_from(self.options.base_time)?,
            Some((_, epoch_ms)) => {
                // Real time: the split's next event is stamped with the
                // start (after a restore too, not with the time it would
                // have had), as the pacer makes it due then.
                let g = generator_from(epoch_ms)?;
                match g.timestamp().saturating_sub(epoch_ms) {
                    0 => g,
                    ahead => generator_from(epoch_ms.saturating_sub(ahead))?,
                }
            }
        };
        Ok(NexmarkSource {
            generator,
            remaining: mine - produced,
            produced,
            paced_from: produced,
            batch_size: self.options.batch_size.max(1),
            pacer: Pacer::new(
                self.options.rate.map(|r| r / n as f64),
                self.start.map(|(at, _)| at),
            ),
            key: Vec::with_capacity(20),
        })
    }
}

struct NexmarkSource {
    generator: EventGenerator,
    remaining: u64,
    produced: u64,
    batch_size: usize,
    pacer: Pacer,
    /// Events produced before this split (re)started: the pacer counts
    /// from there.
    paced_from: u64,
    key: Vec<u8>,
}

impl Source for NexmarkSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, BoxError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let rows = (self.batch_size as u64).min(self.remaining) as usize;
        self.pacer
            .wait_for(self.produced - self.paced_from + rows as u64);
        // Events are 260 bytes of JSON on average (bids: 200–300, with
        // their `extra`): room for all without growing.
        let mut b = BatchBuilder::with_capacity(rows, rows * 320);
        for _ in 0..rows {
            let event = self.generator.next().ok_or("the Nexmark generator ended")?;
            let (kind, id, ts): (&[u8], u64, u64) = match &event {
                Event::Person(p) => (b"person", p.id as u64, p.date_time),
                Event::Auction(a) => (b"auction", a.id as u64, a.date_time),
                Event::Bid(bid) => (b"bid", bid.auction as u64, bid.date_time),
            };
            self.key.clear();
            self.key.extend_from_slice(id.to_string().as_bytes());
            let mut result = Ok(());
            b.push_with_headers_value(
                &self.key,
                ts as i64,
                [(&b"nexmark.type"[..], kind)],
                |out| {
                    result = match &event {
                        Event::Person(p) => serde_json::to_writer(out, p),
                        Event::Auction(a) => serde_json::to_writer(out, a),
                        Event::Bid(bid) => serde_json::to_writer(out, bid),
                    };
                },
            );
            result?;
        }
        self.remaining -= rows as u64;
        self.produced += rows as u64;
        Ok(Some(b.finish()))
    }

    fn position(&self) -> Vec<u8> {
        self.produced.to_le_bytes().to_vec()
    }
}

/// Writes the first `events` events of the generator (the sequence the
/// source produces at any parallelism, with the source's default base time)
/// as JSON lines in flink-nexmark's shape: `{"event_type": 0 | 1 | 2,
/// "person": {…} | null, "auction": {…} | null, "bid": {…} | null}` (0:
/// person, 1: auction, 2: bid). `bench/flink-nexmark` feeds Flink the same
/// events as weir this way.
///
/// # Errors
/// A failure to write.
pub fn write_flink_events(events: u64, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use std::io::Write;
    let config = NexmarkConfig {
        base_time: default_base_time(),
        ..NexmarkConfig::default()
    };
    /// One line: the event under its type's field, the others null.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        event_type: u8,
        person: Option<&'a nexmark::event::Person>,
        auction: Option<&'a nexmark::event::Auction>,
        bid: Option<&'a nexmark::event::Bid>,
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    for event in EventGenerator::new(config).take(events as usize) {
        let line = match &event {
            Event::Person(p) => Line {
                event_type: 0,
                person: Some(p),
                auction: None,
                bid: None,
            },
            Event::Auction(a) => Line {
                event_type: 1,
                person: None,
                auction: Some(a),
                bid: None,
            },
            Event::Bid(b) => Line {
                event_type: 2,
                person: None,
                auction: None,
                bid: Some(b),
            },
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(subtask: usize, parallelism: usize) -> SubtaskInfo {
        SubtaskInfo::new("j", "n", subtask, parallelism)
    }

    fn drain(s: &mut dyn Source) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = s.next_batch().unwrap() {
            out.extend(b.records().map(|r| r.value().to_vec()));
        }
        out
    }

    #[test]
    fn splits_partition_the_single_generator_sequence() {
        let opts = NexmarkOptions {
            events: 101,
            event_type: Some(NexmarkEventType::Bid),
            rate: None,
            base_time: default_base_time(),
            real_time: false,
            batch_size: 16,
            parallelism: None,
        };
        let f = NexmarkSourceFactory::new(opts).unwrap();
        let all = drain(&mut *f.create(&info(0, 1)).unwrap());
        assert_eq!(all.len(), 101);
        // Not the broken default generator: events differ.
        assert_ne!(all[0], all[1]);
        let a = drain(&mut *f.create(&info(0, 2)).unwrap());
        let b = drain(&mut *f.create(&info(1, 2)).unwrap());
        assert_eq!(a.len() + b.len(), 101);
        let mut merged = Vec::new();
        for i in 0..101 {
            merged.push(if i % 2 == 0 {
                a[i / 2].clone()
            } else {
                b[i / 2].clone()
            });
        }
        assert_eq!(merged, all);
        let bid: serde_json::Value = serde_json::from_slice(&all[0]).unwrap();
        assert!(bid.get("price").is_some() && bid.get("auction").is_some());
    }

    #[test]
    fn real_time_events_are_stamped_when_they_are_due() {
        let opts = |rate| NexmarkOptions {
            events: 2_000,
            event_type: None,
            rate,
            base_time: default_base_time(),
            real_time: true,
            batch_size: 100,
            parallelism: None,
        };
        let e = NexmarkSourceFactory::new(opts(None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("real_time") && e.contains("rate"), "{e}");
        assert!(NexmarkSourceFactory::new(opts(Some(0.5))).is_err());

        let now = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let before = now();
        let f = NexmarkSourceFactory::new(opts(Some(10_000.0))).unwrap();
        let mut stamps = Vec::new();
        for subtask in 0..2 {
            let mut s = f.create(&info(subtask, 2)).unwrap();
            while let Some(b) = s.next_batch().unwrap() {
                // Never ahead of the clock: a batch goes out once its last
                // event is due.
                let last = *b.timestamps.last().unwrap();
                assert!(last <= now() + 1, "{last} is ahead of the clock");
                stamps.extend(b.timestamps.iter().copied());
            }
        }
        stamps.sort_unstable();
        // 2,000 events at 10,000 per second: 200 ms of event time, from the
        // moment the factory was made.
        let (first, last) = (stamps[0], stamps[stamps.len() - 1]);
        assert!(
            first >= before && first <= before + 1_000,
            "{first} vs {before}"
        );
        assert!((195..=200).contains(&(last - first)), "{first}..{last}");
    }

    #[test]
    fn a_restored_real_time_split_resumes_now_without_waiting_for_the_past() {
        let f = NexmarkSourceFactory::new(NexmarkOptions {
            events: 2_000_000,
            event_type: None,
            rate: Some(10_000.0),
            base_time: default_base_time(),
            real_time: true,
            batch_size: 100,
            parallelism: None,
        })
        .unwrap();
        let start = f.start.unwrap().1 as i64;
        // Subtask 1 of 2 already produced 300,000 events: 60 s of event
        // time at 10,000 events/s over two splits.
        let mut s = f.split(&info(1, 2), 300_000).unwrap();
        let b = s.next_batch().unwrap().unwrap();
        // Stamped from the start, not 60 s later (and so not held back by
        // the pacer until then: the call returned).
        let first = b.timestamps[0];
        assert!(
            (start..start + 1_000).contains(&first),
            "{first} vs {start}"
        );
        assert_eq!(s.position(), 300_100u64.to_le_bytes().to_vec());
        // The same events as a split that never stopped.
        let mut fixed = NexmarkSourceFactory::new(NexmarkOptions {
            events: 2_000_000,
            event_type: None,
            rate: None,
            base_time: default_base_time(),
            real_time: false,
            batch_size: 100,
            parallelism: None,
        })
        .unwrap()
        .split(&info(1, 2), 300_000)
        .unwrap();
        let same = fixed.next_batch().unwrap().unwrap();
        let id = |v: &[u8]| {
            let e: serde_json::Value = serde_json::from_slice(v).unwrap();
            (e["id"].clone(), e["auction"].clone(), e["bidder"].clone())
        };
        for (a, b) in b.records().zip(same.records()) {
            assert_eq!(id(a.value()), id(b.value()));
        }
    }

    #[test]
    fn flink_events_are_the_source_events() {
        let mut out = Vec::new();
        write_flink_events(200, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 200);
        let opts = NexmarkOptions {
            events: 200,
            event_type: None,
            rate: None,
            base_time: default_base_time(),
            real_time: false,
            batch_size: 64,
            parallelism: None,
        };
        let source = drain(
            &mut *NexmarkSourceFactory::new(opts)
                .unwrap()
                .create(&info(0, 1))
                .unwrap(),
        );
        for (line, value) in lines.iter().zip(&source) {
            let field = ["person", "auction", "bid"][line["event_type"].as_u64().unwrap() as usize];
            let event: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert_eq!(line[field], event);
        }
        let types: std::collections::BTreeSet<u64> = lines
            .iter()
            .map(|l| l["event_type"].as_u64().unwrap())
            .collect();
        assert_eq!(types.len(), 3, "all three event types");
    }
}
