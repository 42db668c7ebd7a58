//! Real components through the sandbox, one call per batch.

use weir_sandbox::{InstanceLabel, InstanceLimits, OperatorKind};
use weir_tests::{batch, sandbox, udf};

fn label(op: &str) -> InstanceLabel {
    InstanceLabel {
        job: "test".into(),
        operator: op.into(),
        subtask: 0,
    }
}

fn bid(price: u64, channel: &str) -> String {
    format!(
        r#"{{"auction":10,"bidder":20,"price":{price},"channel":"{channel}","url":"https://x","date_time":1000,"extra":"pad"}}"#
    )
}

#[test]
fn rust_filter_keeps_rows_without_copying_them_back() {
    let m = sandbox().load_file(&udf("bid-filter")).unwrap();
    assert_eq!(m.kind(), OperatorKind::Filter);
    let config = vec![("min_price".to_string(), "100".to_string())];
    let mut inst = m
        .instantiate(label("f"), InstanceLimits::default(), &config)
        .unwrap();
    let (a, b, c) = (bid(5, "A"), bid(500, "B"), bid(100, "C"));
    let out = inst
        .process(batch(&[("k1", &a, 1), ("k2", &b, 2), ("k3", &c, 3)]))
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out.record(0).key(), b"k2");
    assert_eq!(out.record(1).value(), c.as_bytes());
    assert_eq!(out.timestamps, vec![2, 3]);
    // The same warm instance serves the next batch.
    let out = inst.process(batch(&[("k", &a, 9)])).unwrap();
    assert!(out.is_empty());
}

#[test]
fn rust_map_rewrites_values_and_keys_and_keeps_timestamps() {
    let m = sandbox().load_file(&udf("bid-projection")).unwrap();
    assert_eq!(m.kind(), OperatorKind::Map);
    let config = vec![("rate".to_string(), "0.5".to_string())];
    let mut inst = m
        .instantiate(label("m"), InstanceLimits::default(), &config)
        .unwrap();
    let v = bid(1000, "Baidu");
    let out = inst.process(batch(&[("orig", &v, 77)])).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out.record(0).key(), b"20");
    assert_eq!(out.timestamps, vec![77]);
    let value: serde_json::Value = serde_json::from_slice(out.record(0).value()).unwrap();
    assert_eq!(value["price_eur"], 5.0);
    assert_eq!(value["channel"], "Baidu");
    assert!(value.get("extra").is_none());
}

#[test]
fn rust_flat_map_emits_many_rows_per_record_in_order() {
    let m = sandbox().load_file(&udf("split-words")).unwrap();
    assert_eq!(m.kind(), OperatorKind::FlatMap);
    let mut inst = m
        .instantiate(label("fm"), InstanceLimits::default(), &[])
        .unwrap();
    let out = inst
        .process(batch(&[
            ("a", r#"{"text":"Hello, wasm World"}"#, 1),
            ("b", r#"{"text":""}"#, 2),
            ("c", r#"{"text":"again"}"#, 3),
        ]))
        .unwrap();
    let keys: Vec<_> = out
        .records()
        .map(|r| String::from_utf8(r.key().to_vec()).unwrap())
        .collect();
    assert_eq!(keys, vec!["hello", "wasm", "world", "again"]);
    // Timestamps come from each word's parent record.
    assert_eq!(out.timestamps, vec![1, 1, 1, 3]);
    assert_eq!(out.record(3).value(), br#"{"word":"again"}"#);
}

#[test]
fn python_map_runs_in_the_same_sandbox() {
    let m = sandbox().load_file(&udf("price-band")).unwrap();
    assert_eq!(m.kind(), OperatorKind::Map);
    let config = vec![
        ("low".to_string(), "10".to_string()),
        ("high".to_string(), "100".to_string()),
    ];
    let mut inst = m
        .instantiate(label("py"), InstanceLimits::default(), &config)
        .unwrap();
    let out = inst
        .process(batch(&[
            ("1", r#"{"price_eur":5}"#, 1),
            ("2", r#"{"price_eur":50.5}"#, 2),
            ("3", r#"{"price_eur":100}"#, 3),
        ]))
        .unwrap();
    let bands: Vec<String> = out
        .records()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(r.value()).unwrap()["band"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(bands, vec!["low", "mid", "high"]);
    assert_eq!(out.record(2).key(), b"3");
}

#[test]
fn python_and_rust_flat_maps_agree_on_the_same_input() {
    let input = batch(&[
        ("a", r#"{"text":"Hello, wasm World"}"#, 1),
        ("b", r#"{"text":"  "}"#, 2),
        ("c", r#"{"text":"x again-and AGAIN"}"#, 3),
    ]);
    let config = vec![("min_len".to_string(), "2".to_string())];
    let mut outputs = Vec::new();
    for name in ["split-words", "split-words-py"] {
        let m = sandbox().load_file(&udf(name)).unwrap();
        assert_eq!(m.kind(), OperatorKind::FlatMap, "{name}");
        let mut inst = m
            .instantiate(label(name), InstanceLimits::default(), &config)
            .unwrap();
        outputs.push(inst.process(input.clone()).unwrap());
    }
    assert_eq!(
        outputs[0].len(),
        6,
        "hello wasm world again and again; `x` is too short"
    );
    assert_eq!(
        outputs[0], outputs[1],
        "Rust and Python give the same records"
    );
}
