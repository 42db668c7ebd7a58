//! Click-through rate per campaign per window: an incremental aggregate.
//!
//! Input values are ad events `{"campaign": …, "type": "impression" | "click"}`
//! keyed by campaign; the accumulator is (impressions, clicks); each fired
//! window emits `{"campaign", "start", "end", "impressions", "clicks", "ctr"}`.
//! Events of other types are counted in `other` and otherwise ignored.
//!
//! World: `aggregate-operator` (`wit/windows.wit`).

use serde::{Deserialize, Serialize};
use weir_udf::{Aggregate, Config, Error, Record, Results, Window};

/// The CTR aggregate.
pub struct AdCtr;

#[derive(Deserialize)]
struct AdEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Ctr<'a> {
    campaign: &'a str,
    start: i64,
    end: i64,
    impressions: u64,
    clicks: u64,
    other: u64,
    ctr: f64,
}

impl Aggregate for AdCtr {
    /// (impressions, clicks, other)
    type Acc = (u64, u64, u64);

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self)
    }

    fn create_accumulator(&mut self) -> Self::Acc {
        (0, 0, 0)
    }

    fn add(&mut self, acc: &mut Self::Acc, record: &Record<'_>) -> Result<(), Error> {
        let e: AdEvent<'_> = record.json()?;
        match e.kind {
            "impression" => acc.0 += 1,
            "click" => acc.1 += 1,
            _ => acc.2 += 1,
        }
        Ok(())
    }

    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error> {
        acc.0 += other.0;
        acc.1 += other.1;
        acc.2 += other.2;
        Ok(())
    }

    fn result(
        &mut self,
        key: &[u8],
        window: Window,
        acc: &Self::Acc,
        out: &mut Results,
    ) -> Result<(), Error> {
        let ctr = if acc.0 == 0 {
            0.0
        } else {
            // Rounded to 4 decimals so results compare exactly.
            (acc.1 as f64 / acc.0 as f64 * 10_000.0).round() / 10_000.0
        };
        out.json(&Ctr {
            campaign: &String::from_utf8_lossy(key),
            start: window.start,
            end: window.end,
            impressions: acc.0,
            clicks: acc.1,
            other: acc.2,
            ctr,
        })
    }
}

weir_udf::export_aggregate!(AdCtr);
