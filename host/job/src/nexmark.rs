//! The Nexmark benchmark queries as weir jobs (`weir bench nexmark`).
//!
//! Every query reads the built-in generator's mixed stream (people, auctions
//! and bids, 1 : 3 : 46) and runs its logic in Wasm: `nexmark-select` (a
//! flat-map) keeps and keys the events the query reads, then windows
//! (`bid-count`, `nexmark-agg`) or a keyed process function (`nexmark-join`)
//! do the rest. The definitions are those of the Nexmark SQL of
//! flink-nexmark, which `bench/flink-nexmark` runs in Flink on the same
//! events; `tests/all/nexmark.rs` checks each against an independent
//! computation.
//!
//! | query | what | weir job |
//! |---|---|---|
//! | q0 | pass-through of bids | select |
//! | q1 | bid prices in euros | select |
//! | q2 | bids of some auctions | select |
//! | q3 | sellers of category 10 in OR, ID, CA (join) | select → keyed join |
//! | q4 | average winning price per category | select → winning bid per auction (keyed process, timer at expiry) → average per category (keyed process) |
//! | q5 | hottest auctions, 10 s windows every 2 s | select → 2 s slice count → 10 s sliding sum → per-window max |
//! | q7 | highest bid of each 10 s | select → max per auction → max per window |
//! | q8 | new users who opened an auction (windowed join) | select → 10 s window per person |
//! | q11 | bids per user session (gap 10 s) | select → session count |

use std::fmt::Write;
use std::str::FromStr;

/// A Nexmark query weir runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Query {
    /// Pass-through.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion (join).
    Q3,
    /// Average price per category (join, then aggregate).
    Q4,
    /// Hot items (sliding windows).
    Q5,
    /// Highest bid (tumbling windows).
    Q7,
    /// Monitor new users (windowed join).
    Q8,
    /// User sessions (session windows).
    Q11,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 9] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
        Query::Q11,
    ];

    /// `q0`, `q1`, ….
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q11 => "q11",
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Query {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Query::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
                format!(
                    "unknown Nexmark query `{s}`; weir runs {}",
                    names.join(", ")
                )
            })
    }
}

/// What a Nexmark job reads and where it writes.
#[derive(Clone, Debug)]
pub struct NexmarkJob {
    /// The query.
    pub query: Query,
    /// Events the generator produces (all types).
    pub events: u64,
    /// Parallelism of every node.
    pub parallelism: usize,
    /// Events per second, event time following the wall clock (the
    /// source's `real_time`), so that the sink's event time lag is the
    /// latency; as fast as possible, on fixed event times, if `None`.
    pub rate: Option<u64>,
    /// The sink's table, after `input` and `[sink.out]` (for example
    /// `kind = "discard"`).
    pub sink: String,
}

impl NexmarkJob {
    /// The job file.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        let q = self.query;
        let _ = write!(
            t,
            r#"# Nexmark {q}, written by weir's Nexmark benchmark (weir_job::nexmark).
[job]
name = "nexmark-{q}"
parallelism = {p}

[source.events]
kind = "nexmark"
events = {n}{pace}
watermark = {{ strategy = "bounded-out-of-orderness", max_out_of_orderness_ms = 4_000 }}

[operator.select]
input = "events"
module = "nexmark-select"
config = {{ query = "{q}" }}
"#,
            p = self.parallelism,
            n = self.events,
            pace = match self.rate {
                Some(r) => format!("\nrate = {r}\nreal_time = true"),
                None => String::new(),
            },
        );
        let last = match q {
            Query::Q0 | Query::Q1 | Query::Q2 => "select",
            Query::Q3 => {
                t.push_str(
                    r#"
[operator.join]
input = "select"
module = "nexmark-join"
config = { query = "q3" }
"#,
                );
                "join"
            }
            Query::Q4 => {
                t.push_str(
                    r#"
[operator.winning]
input = "select"
module = "nexmark-join"
config = { query = "q4-max" }

[operator.by-category]
input = "winning"
module = "nexmark-select"
config = { query = "q4-category" }

[operator.average]
input = "by-category"
module = "nexmark-join"
config = { query = "q4-avg" }
"#,
                );
                "average"
            }
            Query::Q5 => {
                t.push_str(
                    r#"
[operator.slices]
input = "select"
module = "bid-count"
window = { type = "tumbling", size = "2s" }

[operator.count]
input = "slices"
module = "nexmark-agg"
config = { query = "q5-sum" }
window = { type = "sliding", size = "10s", slide = "2s" }

[operator.by-window]
input = "count"
module = "nexmark-select"
config = { query = "q5-windows" }

[operator.hottest]
input = "by-window"
module = "nexmark-agg"
config = { query = "q5" }
window = { type = "tumbling", size = "2s" }
"#,
                );
                "hottest"
            }
            Query::Q7 => {
                t.push_str(
                    r#"
[operator.per-auction]
input = "select"
module = "nexmark-agg"
config = { query = "q7" }
window = { type = "tumbling", size = "10s" }

[operator.together]
input = "per-auction"
module = "nexmark-select"
config = { query = "q7-global" }

[operator.highest]
input = "together"
module = "nexmark-agg"
config = { query = "q7" }
window = { type = "tumbling", size = "10s" }
"#,
                );
                "highest"
            }
            Query::Q8 => {
                t.push_str(
                    r#"
[operator.new-users]
input = "select"
module = "nexmark-agg"
config = { query = "q8" }
window = { type = "tumbling", size = "10s" }
"#,
                );
                "new-users"
            }
            Query::Q11 => {
                t.push_str(
                    r#"
[operator.sessions]
input = "select"
module = "bid-count"
window = { type = "session", gap = "10s" }
"#,
                );
                "sessions"
            }
        };
        let _ = write!(t, "\n[sink.out]\ninput = \"{last}\"\n{}\n", self.sink);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_is_a_valid_job() {
        for q in Query::ALL {
            let job = NexmarkJob {
                query: q,
                events: 1000,
                parallelism: 2,
                rate: (q == Query::Q4).then_some(50_000),
                sink: "kind = \"discard\"".into(),
            };
            let text = job.toml();
            let spec = crate::parse_job(std::path::Path::new("nexmark.toml"), &text)
                .unwrap_or_else(|e| panic!("{q}: {e}\n{text}"));
            assert_eq!(spec.name, format!("nexmark-{q}"));
        }
    }

    #[test]
    fn names_parse_back() {
        for q in Query::ALL {
            assert_eq!(q.name().parse::<Query>(), Ok(q));
        }
        let e = "q6".parse::<Query>().unwrap_err();
        assert!(e.contains("q6") && e.contains("q11"), "{e}");
    }
}
