//! The Nexmark queries of `weir bench nexmark` (weir_job::nexmark), each run
//! as the benchmark runs it (generator → Wasm UDFs) at parallelism 2, its
//! output compared with an independent computation here over the same
//! generated events. Only the events come from the same place (the nexmark
//! crate's generator); every query is computed here in plain Rust.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Auction, Bid, Event, Person};
use serde_json::{Value, json};
use weir_job::nexmark::{NexmarkJob, Query};
use weir_tests::{read_jsonl, udf_dir};

/// 30 s of event time at the generator's 10,000 events/s: three 10 s
/// windows, fifteen 2 s slides, 600 people, 18,000 auctions.
const EVENTS: u64 = 300_000;
/// The source's default first event time (2026-01-01).
const BASE_TIME: u64 = 1_767_225_600_000;

struct Events {
    people: Vec<Person>,
    auctions: Vec<Auction>,
    bids: Vec<Bid>,
}

fn events() -> &'static Events {
    static EVENTS_: OnceLock<Events> = OnceLock::new();
    EVENTS_.get_or_init(|| {
        let mut e = Events {
            people: Vec::new(),
            auctions: Vec::new(),
            bids: Vec::new(),
        };
        let generator = EventGenerator::new(NexmarkConfig {
            base_time: BASE_TIME,
            ..NexmarkConfig::default()
        });
        for ev in generator.take(EVENTS as usize) {
            match ev {
                Event::Person(p) => e.people.push(p),
                Event::Auction(a) => e.auctions.push(a),
                Event::Bid(b) => e.bids.push(b),
            }
        }
        e
    })
}

/// Runs `query` and returns its output values, sorted.
fn run(query: Query) -> Vec<Value> {
    for m in ["nexmark-select", "nexmark-agg", "nexmark-join", "bid-count"] {
        assert!(
            udf_dir().join(format!("{m}.wasm")).is_file(),
            "{m} is not built: run `weir udf build udfs/rust/bench/{m}`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let job = NexmarkJob {
        query,
        events: EVENTS,
        parallelism: 2,
        rate: None,
        sink: "kind = \"file\"\npath = \"out.jsonl\"\nformat = \"value\"".into(),
    };
    let file = dir.path().join("job.toml");
    std::fs::write(&file, job.toml()).unwrap();
    let outcome = weir_tests::run_job(&file).unwrap_or_else(|e| panic!("{query}: {e}"));
    outcome
        .result
        .unwrap_or_else(|e| panic!("{query}: the job failed: {e}"));
    sorted(read_jsonl(&dir.path().join("out.jsonl")))
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

fn check(query: Query, want: Vec<Value>) {
    let want = sorted(want);
    assert!(!want.is_empty(), "{query}: the input exercises the query");
    let got = run(query);
    if got != want {
        let first = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{query}: {} rows, expected {}; first difference at {first}: got {:?}, expected {:?}",
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
}

#[test]
fn q0_passes_bids_through() {
    let want = events()
        .bids
        .iter()
        .map(|b| json!({"auction": b.auction, "bidder": b.bidder, "price": b.price, "date_time": b.date_time, "extra": b.extra}))
        .collect();
    check(Query::Q0, want);
}

#[test]
fn q1_converts_prices_to_euros() {
    let want = events()
        .bids
        .iter()
        .map(|b| {
            json!({"auction": b.auction, "bidder": b.bidder, "price": (b.price as f64 * 908.0) / 1000.0, "date_time": b.date_time, "extra": b.extra})
        })
        .collect();
    check(Query::Q1, want);
}

#[test]
fn q2_selects_auctions() {
    let want = events()
        .bids
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| json!({"auction": b.auction, "price": b.price}))
        .collect();
    check(Query::Q2, want);
}

#[test]
fn q3_joins_sellers_with_their_auctions() {
    let e = events();
    let people: HashMap<usize, &Person> = e
        .people
        .iter()
        .filter(|p| ["or", "id", "ca"].contains(&p.state.as_str()))
        .map(|p| (p.id, p))
        .collect();
    let want = e
        .auctions
        .iter()
        .filter(|a| a.category == 10)
        .filter_map(|a| people.get(&a.seller).map(|p| (p, a)))
        .map(|(p, a)| json!({"name": p.name, "city": p.city, "state": p.state, "id": a.id}))
        .collect();
    check(Query::Q3, want);
}

#[test]
fn q4_averages_winning_prices_per_category() {
    let e = events();
    // The winning (highest) price of each auction among its bids within
    // [opening, expiry]; auctions without such a bid do not count.
    let mut winning: HashMap<usize, u64> = HashMap::new();
    let auctions: HashMap<usize, &Auction> = e.auctions.iter().map(|a| (a.id, a)).collect();
    for b in &e.bids {
        if let Some(a) = auctions.get(&b.auction)
            && (a.date_time..=a.expires).contains(&b.date_time)
        {
            let w = winning.entry(a.id).or_default();
            *w = (*w).max(b.price as u64);
        }
    }
    let mut per_category: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for (id, price) in &winning {
        let c = per_category.entry(auctions[id].category).or_default();
        c.0 += price;
        c.1 += 1;
    }
    assert!(per_category.len() > 1, "the input has several categories");
    // weir emits the category's running average as each auction closes: one
    // row per winning auction, the last of each category (the most auctions)
    // its final average, which is what the SQL query's result ends at.
    let got = run(Query::Q4);
    assert_eq!(got.len(), winning.len(), "one row per auction with a bid");
    let mut last: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let mut counts: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for row in &got {
        let c = row["category"].as_u64().unwrap() as usize;
        let n = row["auctions"].as_u64().unwrap();
        let avg = row["avg"].as_u64().unwrap();
        counts.entry(c).or_default().push(n);
        let l = last.entry(c).or_default();
        if n > l.1 {
            *l = (avg, n);
        }
    }
    for (c, ns) in &mut counts {
        ns.sort_unstable();
        assert!(
            ns.iter().copied().eq(1..=ns.len() as u64),
            "category {c}: the running counts are 1..n once each"
        );
    }
    let want: BTreeMap<usize, (u64, u64)> = per_category
        .into_iter()
        .map(|(c, (sum, n))| (c, (sum / n, n)))
        .collect();
    assert_eq!(last, want, "final (average, auctions) per category");
}

#[test]
fn q5_finds_the_hottest_auctions_of_each_sliding_window() {
    // Counts per (window end, auction); a bid at t is in the windows ending
    // at the multiples of 2 s in (t, t + 10 s].
    let mut counts: BTreeMap<i64, HashMap<usize, u64>> = BTreeMap::new();
    for b in &events().bids {
        let t = b.date_time as i64;
        let mut end = t.div_euclid(2_000) * 2_000 + 2_000;
        while end <= t + 10_000 {
            *counts.entry(end).or_default().entry(b.auction).or_default() += 1;
            end += 2_000;
        }
    }
    let mut want = Vec::new();
    for (end, by_auction) in counts {
        let max = by_auction.values().copied().max().unwrap();
        for (auction, n) in by_auction {
            if n == max {
                want.push(json!({"auction": auction, "num": n, "end": end}));
            }
        }
    }
    check(Query::Q5, want);
}

#[test]
fn q7_finds_the_highest_bids_of_each_window() {
    let mut windows: BTreeMap<u64, Vec<&Bid>> = BTreeMap::new();
    for b in &events().bids {
        windows.entry(b.date_time / 10_000).or_default().push(b);
    }
    let mut want = Vec::new();
    for bids in windows.values() {
        let max = bids.iter().map(|b| b.price).max().unwrap();
        for b in bids.iter().filter(|b| b.price == max) {
            want.push(json!({"auction": b.auction, "price": b.price, "bidder": b.bidder, "date_time": b.date_time, "extra": b.extra}));
        }
    }
    check(Query::Q7, want);
}

#[test]
fn q8_finds_new_users_who_opened_an_auction() {
    let e = events();
    let sellers: BTreeSet<(usize, u64)> = e
        .auctions
        .iter()
        .map(|a| (a.seller, a.date_time / 10_000))
        .collect();
    let want = e
        .people
        .iter()
        .filter(|p| sellers.contains(&(p.id, p.date_time / 10_000)))
        .map(|p| json!({"id": p.id, "name": p.name, "start": p.date_time / 10_000 * 10_000}))
        .collect();
    check(Query::Q8, want);
}

#[test]
fn q11_counts_bids_per_user_session() {
    let mut times: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for b in &events().bids {
        times.entry(b.bidder).or_default().push(b.date_time as i64);
    }
    let mut want = Vec::new();
    for (bidder, mut ts) in times {
        ts.sort_unstable();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0u64);
        for t in ts {
            if t >= last + 10_000 {
                want.push(json!({"key": bidder.to_string(), "start": start, "end": last + 10_000, "count": n}));
                start = t;
                n = 0;
            }
            last = t;
            n += 1;
        }
        want.push(
            json!({"key": bidder.to_string(), "start": start, "end": last + 10_000, "count": n}),
        );
    }
    check(Query::Q11, want);
}
