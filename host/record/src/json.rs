//! JSON Lines views of records, shared by the file sources and sinks.
//!
//! Two line formats:
//! * **value** — the line *is* the record value; the key and timestamp may be
//!   taken from top-level fields of it.
//! * **envelope** — the line describes the whole record:
//!   `{"key": "…", "value": …, "timestamp": 123, "headers": {"name": "value"}}`.
//!   A value that is valid JSON is embedded as JSON, otherwise as a string;
//!   reading an envelope back gives the same bytes for JSON values written
//!   compactly.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::RecordRef;

/// How a JSON Lines file maps to records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// Each line is a record value.
    #[default]
    Value,
    /// Each line is an envelope with key, value, timestamp and headers.
    Envelope,
}

/// A record decoded from one line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Key bytes.
    pub key: Vec<u8>,
    /// Value bytes.
    pub value: Vec<u8>,
    /// Event timestamp, if the line carries one.
    pub timestamp: Option<i64>,
    /// Headers.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    key: Option<&'a RawValue>,
    #[serde(borrow)]
    value: &'a RawValue,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What is wrong with a JSON line; the caller adds the file and line.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not `{"key":…,"value":…,"timestamp":…,"headers":{…}}`.
    #[error("not a record envelope: {0}")]
    NotAnEnvelope(#[source] serde_json::Error),
    /// A header whose value is not a JSON string.
    #[error("header `{header}` must be a string, found {found}")]
    HeaderNotAString {
        /// The header.
        header: String,
        /// Its JSON value.
        found: String,
    },
    /// A line that must be an object (key or timestamp fields are named).
    #[error("not a JSON object: {0}")]
    NotAnObject(#[source] serde_json::Error),
    /// The named key field is missing.
    #[error("has no key field `{0}`")]
    NoKeyField(String),
    /// The named timestamp field is missing.
    #[error("has no timestamp field `{0}`")]
    NoTimestampField(String),
    /// The timestamp field holds something else than milliseconds.
    #[error("timestamp field `{field}` is {found}, not an integer of milliseconds")]
    TimestampNotAnInteger {
        /// The field.
        field: String,
        /// Its JSON value.
        found: String,
    },
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
}

/// Decodes one line of a JSON Lines file.
///
/// `key_field` and `timestamp_field` name top-level fields of a `value` line
/// whose contents become the key (strings without quotes, other JSON as text)
/// and the timestamp (an integer of milliseconds).
///
/// # Errors
/// What is wrong with the line; the caller adds file and line.
pub fn decode_line(
    line: &str,
    format: LineFormat,
    key_field: Option<&str>,
    timestamp_field: Option<&str>,
) -> Result<DecodedRecord, LineError> {
    match format {
        LineFormat::Envelope => {
            let env: Envelope<'_> = serde_json::from_str(line).map_err(LineError::NotAnEnvelope)?;
            let headers = match env.headers {
                None => Vec::new(),
                Some(map) => map
                    .into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => Ok((k.into_bytes(), s.into_bytes())),
                        other => Err(LineError::HeaderNotAString {
                            header: k,
                            found: other.to_string(),
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            };
            Ok(DecodedRecord {
                key: env.key.map(raw_to_bytes).unwrap_or_default(),
                value: raw_to_bytes(env.value),
                timestamp: env.timestamp,
                headers,
            })
        }
        LineFormat::Value => {
            let mut rec = DecodedRecord {
                value: line.as_bytes().to_vec(),
                ..Default::default()
            };
            if key_field.is_some() || timestamp_field.is_some() {
                let obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).map_err(LineError::NotAnObject)?;
                if let Some(f) = key_field {
                    let v = obj
                        .get(f)
                        .ok_or_else(|| LineError::NoKeyField(f.to_string()))?;
                    rec.key = match v {
                        serde_json::Value::String(s) => s.clone().into_bytes(),
                        other => other.to_string().into_bytes(),
                    };
                }
                if let Some(f) = timestamp_field {
                    let v = obj
                        .get(f)
                        .ok_or_else(|| LineError::NoTimestampField(f.to_string()))?;
                    rec.timestamp =
                        Some(v.as_i64().ok_or_else(|| LineError::TimestampNotAnInteger {
                            field: f.to_string(),
                            found: v.to_string(),
                        })?);
                }
            } else {
                serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(LineError::NotJson)?;
            }
            Ok(rec)
        }
    }
}

/// A JSON string becomes its contents, anything else its JSON text.
fn raw_to_bytes(raw: &RawValue) -> Vec<u8> {
    let text = raw.get();
    if text.starts_with('"')
        && let Ok(s) = serde_json::from_str::<String>(text)
    {
        return s.into_bytes();
    }
    if text == "null" {
        return Vec::new();
    }
    text.as_bytes().to_vec()
}

/// Writes `bytes` into `out` as JSON: verbatim when they already are one
/// compact JSON document, as a JSON string otherwise.
fn write_json_or_string(bytes: &[u8], out: &mut Vec<u8>) {
    let is_json =
        !bytes.contains(&b'\n') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    if is_json {
        out.extend_from_slice(bytes);
    } else {
        write_string(bytes, out);
    }
}

fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    let s = String::from_utf8_lossy(bytes);
    // Serializing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &*s);
}

/// Appends `record` as one line in `format`, newline included.
pub fn encode_line(record: &RecordRef<'_>, format: LineFormat, out: &mut Vec<u8>) {
    match format {
        LineFormat::Value => {
            let v = record.value();
            if v.contains(&b'\n') {
                write_string(v, out);
            } else {
                out.extend_from_slice(v);
            }
        }
        LineFormat::Envelope => {
            out.extend_from_slice(b"{\"key\":");
            write_string(record.key(), out);
            out.extend_from_slice(b",\"timestamp\":");
            out.extend_from_slice(record.timestamp().to_string().as_bytes());
            out.extend_from_slice(b",\"value\":");
            write_json_or_string(record.value(), out);
            let mut headers = record.headers().peekable();
            if headers.peek().is_some() {
                out.extend_from_slice(b",\"headers\":{");
                for (i, (name, value)) in headers.enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(name, out);
                    out.push(b':');
                    write_string(value, out);
                }
                out.push(b'}');
            }
            out.push(b'}');
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchBuilder;

    #[test]
    fn envelope_round_trip() {
        let mut b = BatchBuilder::default();
        b.push_with_headers(b"user-1", br#"{"n":1}"#, 42, [(&b"type"[..], &b"bid"[..])]);
        b.push(b"", b"plain text", 7);
        let batch = b.finish();
        let mut out = Vec::new();
        for r in batch.records() {
            encode_line(&r, LineFormat::Envelope, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"key":"user-1","timestamp":42,"value":{"n":1},"headers":{"type":"bid"}}"#
        );
        let d = decode_line(lines[0], LineFormat::Envelope, None, None).unwrap();
        assert_eq!(d.key, b"user-1");
        assert_eq!(d.value, br#"{"n":1}"#);
        assert_eq!(d.timestamp, Some(42));
        assert_eq!(d.headers, vec![(b"type".to_vec(), b"bid".to_vec())]);
        let d = decode_line(lines[1], LineFormat::Envelope, None, None).unwrap();
        assert_eq!(d.value, b"plain text");
        assert_eq!(d.key, b"");
    }

    #[test]
    fn value_lines_take_key_and_timestamp_fields() {
        let line = r#"{"user":"ann","ts":1000,"amount":3}"#;
        let d = decode_line(line, LineFormat::Value, Some("user"), Some("ts")).unwrap();
        assert_eq!(d.key, b"ann");
        assert_eq!(d.timestamp, Some(1000));
        assert_eq!(d.value, line.as_bytes());
        let err = decode_line(line, LineFormat::Value, Some("nope"), None).unwrap_err();
        assert!(
            matches!(&err, LineError::NoKeyField(f) if f == "nope"),
            "{err}"
        );
        let err = decode_line(r#"{"ts":"x"}"#, LineFormat::Value, None, Some("ts")).unwrap_err();
        assert!(
            matches!(&err, LineError::TimestampNotAnInteger { field, .. } if field == "ts"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "timestamp field `ts` is \"x\", not an integer of milliseconds"
        );
        assert!(decode_line("{oops", LineFormat::Value, None, None).is_err());
    }
}
