//! An `[operator.NAME]` table: the module, its limits and configuration,
//! its window (type, trigger, evictor, lateness), side outputs, state TTLs.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    input: Inputs,
    module: String,
    kind: Option<String>,
    #[serde(default)]
    config: toml::Table,
    parallelism: Option<usize>,
    #[serde(default = "yes")]
    chain: bool,
    partition: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    window: Option<RawWindow>,
    trigger: Option<RawTrigger>,
    evictor: Option<RawEvictor>,
    allowed_lateness: Option<String>,
    late_output: Option<String>,
    #[serde(default)]
    side_outputs: Vec<String>,
    #[serde(default)]
    state_ttl: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(rename = "type")]
    kind: String,
    size: Option<String>,
    slide: Option<String>,
    offset: Option<String>,
    gap: Option<String>,
    time: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(rename = "type")]
    kind: String,
    count: Option<u64>,
    interval: Option<String>,
    #[serde(default)]
    purge: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvictor {
    #[serde(rename = "type")]
    kind: String,
    count: Option<usize>,
    keep: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<u64>,
    cpu_deadline_ms: Option<u64>,
    init_deadline_ms: Option<u64>,
}

/// The operator an `[operator.NAME]` table describes, and whether its
/// input is partitioned by key.
pub(super) fn parse(
    c: &NodeContext<'_>,
    table: toml::Table,
) -> Result<(OperatorSpec, bool), JobError> {
    let raw: RawOperator = c.options(table)?;
    let kind = match raw.kind.as_deref() {
        None => None,
        Some(k) => Some(
            OperatorKind::ALL
                .into_iter()
                .find(|o| o.name() == k)
                .ok_or_else(|| {
                    c.error(
                        "kind",
                        format!(
                            "unknown operator kind `{k}`; expected filter, map, flat-map, aggregate, process-window or keyed-process"
                        ),
                    )
                })?,
        ),
    };
    c.check_parallelism(raw.parallelism)?;
    let key_by = c.partition(raw.partition.as_deref())?;
    let defaults = InstanceLimits::default();
    let limits = InstanceLimits {
        memory_bytes: raw.limits.memory_mb.map_or(defaults.memory_bytes, |m| {
            (m as usize).saturating_mul(1 << 20)
        }),
        call_deadline: raw
            .limits
            .cpu_deadline_ms
            .map_or(defaults.call_deadline, Duration::from_millis),
        init_deadline: raw
            .limits
            .init_deadline_ms
            .map_or(defaults.init_deadline, Duration::from_millis),
    };
    if limits.memory_bytes == 0 || limits.call_deadline.is_zero() || limits.init_deadline.is_zero()
    {
        return Err(c.error("limits", "limits must be positive".into()));
    }
    let mut config = Vec::new();
    flatten_config("", &raw.config, &mut config);
    let window = window_spec(c, &raw)?;
    let mut side_outputs = raw.side_outputs.clone();
    if let Some(late) = &raw.late_output {
        if window.is_none() {
            return Err(c.error(
                "late_output",
                "`late_output` applies to window operators (add a `window`)".into(),
            ));
        }
        side_outputs.insert(0, late.clone());
    }
    for (i, s) in side_outputs.iter().enumerate() {
        if s.is_empty() || s.contains('.') {
            return Err(c.error(
                "side_outputs",
                format!("side output name `{s}` must be non-empty and without dots"),
            ));
        }
        if side_outputs[..i].contains(s) {
            return Err(c.error("side_outputs", format!("side output `{s}` is named twice")));
        }
    }
    let mut state_ttl = Vec::new();
    for (state, ttl) in &raw.state_ttl {
        let Some(text) = ttl.as_str() else {
            return Err(c.error(
                "state_ttl",
                format!("the TTL of state `{state}` must be a duration string such as \"1h\""),
            ));
        };
        let d = c.duration("state_ttl", text)?;
        if d.is_zero() {
            return Err(c.error(
                "state_ttl",
                format!("the TTL of state `{state}` must be positive"),
            ));
        }
        state_ttl.push((state.clone(), d));
    }
    // Windows and keyed process functions work per key: their input is
    // always partitioned by key.
    let keyed = window.is_some() || kind == Some(OperatorKind::KeyedProcess);
    Ok((
        OperatorSpec {
            inputs: raw.input.into_vec(),
            module: raw.module,
            kind,
            config,
            parallelism: raw.parallelism,
            chain: raw.chain,
            limits,
            window,
            side_outputs,
            state_ttl,
        },
        key_by || keyed,
    ))
}

fn window_spec(c: &NodeContext<'_>, raw: &RawOperator) -> Result<Option<WindowSpec>, JobError> {
    let Some(w) = &raw.window else {
        for (field, set) in [
            ("trigger", raw.trigger.is_some()),
            ("evictor", raw.evictor.is_some()),
            ("allowed_lateness", raw.allowed_lateness.is_some()),
        ] {
            if set {
                return Err(c.error(
                    field,
                    format!("`{field}` applies to window operators (add a `window`)"),
                ));
            }
        }
        return Ok(None);
    };
    let need = |v: &Option<String>, field: &str| -> Result<Duration, JobError> {
        match v {
            Some(t) => c.duration(field, t),
            None => Err(c.error("window", format!("a `{}` window needs `{field}`", w.kind))),
        }
    };
    let opt = |v: &Option<String>, field: &str| -> Result<Duration, JobError> {
        v.as_ref()
            .map_or(Ok(Duration::ZERO), |t| c.duration(field, t))
    };
    let assigner = match w.kind.as_str() {
        "tumbling" => WindowAssigner::Tumbling {
            size: need(&w.size, "size")?,
            offset: opt(&w.offset, "offset")?,
        },
        "sliding" => WindowAssigner::Sliding {
            size: need(&w.size, "size")?,
            slide: need(&w.slide, "slide")?,
            offset: opt(&w.offset, "offset")?,
        },
        "session" => WindowAssigner::Session {
            gap: need(&w.gap, "gap")?,
        },
        "global" => WindowAssigner::Global,
        other => {
            return Err(c.error(
                "window",
                format!(
                    "unknown window type `{other}`; expected tumbling, sliding, session or global"
                ),
            ));
        }
    };
    assigner
        .validate()
        .map_err(|e| c.error("window", e.to_string()))?;
    let time = match w.time.as_deref() {
        None | Some("event") => TimeMode::Event,
        Some("processing") => TimeMode::Processing,
        Some(other) => {
            return Err(c.error(
                "window",
                format!("unknown window time `{other}`; expected `event` or `processing`"),
            ));
        }
    };
    let mut spec = WindowSpec::new(assigner);
    spec.time = time;
    spec.trigger = match time {
        TimeMode::Event => Trigger::EventTime,
        TimeMode::Processing => Trigger::ProcessingTime,
    };
    if let Some(t) = &raw.trigger {
        let interval = || match &t.interval {
            Some(i) => c.duration("interval", i),
            None => Err(c.error(
                "trigger",
                format!("a `{}` trigger needs `interval`", t.kind),
            )),
        };
        spec.trigger = match t.kind.as_str() {
            "event-time" => Trigger::EventTime,
            "processing-time" => Trigger::ProcessingTime,
            "count" => match t.count {
                Some(n) if n > 0 => Trigger::Count { count: n },
                _ => {
                    return Err(c.error(
                        "trigger",
                        "a `count` trigger needs `count` of at least 1".into(),
                    ));
                }
            },
            "continuous-event-time" => Trigger::ContinuousEventTime {
                interval: interval()?,
            },
            "continuous-processing-time" => Trigger::ContinuousProcessingTime {
                interval: interval()?,
            },
            other => {
                return Err(c.error(
                    "trigger",
                    format!(
                        "unknown trigger `{other}`; expected event-time, processing-time, \
                         count, continuous-event-time or continuous-processing-time"
                    ),
                ));
            }
        };
        if time == TimeMode::Processing
            && matches!(
                spec.trigger,
                Trigger::EventTime | Trigger::ContinuousEventTime { .. }
            )
        {
            return Err(c.error(
                "trigger",
                "an event-time trigger cannot fire processing-time windows".into(),
            ));
        }
        spec.purge = t.purge;
    }
    if let Some(e) = &raw.evictor {
        spec.evictor = Some(match (e.kind.as_str(), e.count, &e.keep) {
            ("count", Some(n), None) if n > 0 => Evictor::Count(n),
            ("time", None, Some(k)) => Evictor::Time(c.duration("keep", k)?),
            ("count", ..) => {
                return Err(c.error(
                    "evictor",
                    "a `count` evictor needs `count` (at least 1) and no `keep`".into(),
                ));
            }
            ("time", ..) => {
                return Err(c.error(
                    "evictor",
                    "a `time` evictor needs `keep` (a duration) and no `count`".into(),
                ));
            }
            (other, ..) => {
                return Err(c.error(
                    "evictor",
                    format!("unknown evictor `{other}`; expected `count` or `time`"),
                ));
            }
        });
    }
    if let Some(l) = &raw.allowed_lateness {
        if time == TimeMode::Processing {
            return Err(c.error(
                "allowed_lateness",
                "allowed lateness applies to event-time windows".into(),
            ));
        }
        spec.allowed_lateness = c.duration("allowed_lateness", l)?;
    }
    if raw.late_output.is_some() {
        spec.late_port = Some(1);
    }
    Ok(Some(spec))
}

fn flatten_config(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten_config(&key, t, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Array(_) => out.push((key, serde_json::to_string(v).unwrap_or_default())),
            other => out.push((key, other.to_string())),
        }
    }
}
