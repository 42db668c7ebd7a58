//! Conformance `keyed` in Rust (udfs/conformance/README.md): value, list and
//! map state, event-time timers and a side output.

use weir_udf::state::{ListState, MapState, ValueState};
use weir_udf::{Codec, Config, Context, Error, KeyedProcess, Record, Timer};

/// Text stored as its bytes, as the other languages store it (the SDK's
/// `String` codec prefixes the length).
#[derive(Clone, PartialEq, Eq)]
struct Text(String);

impl Codec for Text {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_bytes());
    }
    fn decode(bytes: &mut &[u8]) -> Result<Self, Error> {
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::failed("stored text is not UTF-8"))?;
        *bytes = &[];
        Ok(Text(text))
    }
}

/// Running total, and amounts and words per 10 s bucket.
pub struct Buckets {
    total: ValueState<i64>,
    amounts: ListState<Text>,
    words: MapState<Text, Text>,
}

impl KeyedProcess for Buckets {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Self {
            total: ValueState::new("total"),
            amounts: ListState::new("amounts"),
            words: MapState::new("words"),
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, record: &Record<'_>) -> Result<(), Error> {
        let text = record.value_str()?;
        let mut parts = text.split(' ');
        let amount: i64 = parts.next().unwrap_or("").parse().map_err(|_| {
            Error::InvalidRecord(format!("record {}: `{text}` has no amount", record.index()))
        })?;
        let t = record.timestamp();
        let bucket = t - t.rem_euclid(10_000) + 9_999;

        let total = self.total.get()?.unwrap_or(0) + amount;
        self.total.set(&total);
        self.amounts.add(&Text(format!("{bucket}:{amount}")));
        for word in parts {
            let key = Text(format!("{bucket}/{word}"));
            let count: u64 = match self.words.get(&key)? {
                Some(Text(c)) => c.parse().map_err(|_| Error::failed("bad word count"))?,
                None => 0,
            };
            self.words.put(&key, &Text((count + 1).to_string()));
        }
        ctx.register_event_timer(bucket);
        if amount >= 90 {
            ctx.emit(format!("big {amount} total={total}").as_bytes(), t);
        }
        if amount < 10 {
            ctx.emit_side("small", format!("small {amount}").as_bytes(), t);
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: Timer) -> Result<(), Error> {
        let t = timer.timestamp;
        let prefix = format!("{t}:");
        let (mine, rest): (Vec<Text>, Vec<Text>) = self
            .amounts
            .get()?
            .into_iter()
            .partition(|a| a.0.starts_with(&prefix));
        self.amounts.set(&rest);
        let amounts: Vec<&str> = mine.iter().map(|a| &a.0[prefix.len()..]).collect();

        let prefix = format!("{t}/");
        let mut words = Vec::new();
        for (key, count) in self.words.entries()? {
            if let Some(word) = key.0.strip_prefix(&prefix) {
                words.push(format!("{word}:{}", count.0));
                self.words.remove(&key);
            }
        }
        let line = format!(
            "bucket {t} amounts={} words={}",
            amounts.join(","),
            words.join(",")
        );
        ctx.emit(line.as_bytes(), t);
        Ok(())
    }
}

weir_udf::export_keyed_process!(Buckets);
