//! Every kind of bad input gets a clear error naming the module (and, in
//! jobs, the operator and the line); none panics the host.

use std::io::Write;
use std::time::{Duration, Instant};

use weir_sandbox::{GuestFailure, InstanceLabel, InstanceLimits, OperatorInstance, SandboxError};
use weir_tests::{batch, many_functions, sandbox, udf};

fn write_temp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    (dir, path)
}

fn misbehave(mode: &str, limits: InstanceLimits) -> OperatorInstance {
    let m = sandbox().load_file(&udf("misbehave")).unwrap();
    let config = vec![("mode".to_string(), mode.to_string())];
    let label = InstanceLabel {
        job: "test".into(),
        operator: format!("misbehave-{mode}"),
        subtask: 0,
    };
    m.instantiate(label, limits, &config).unwrap()
}

fn failure(e: SandboxError) -> GuestFailure {
    match e {
        SandboxError::Guest {
            module, failure, ..
        } => {
            assert_eq!(module, "misbehave.wasm");
            failure
        }
        other => panic!("expected a guest failure, got {other}"),
    }
}

#[test]
fn a_file_that_is_not_wasm() {
    let (_d, path) = write_temp("notes.wasm", b"hello, I am text");
    let e = sandbox().load_file(&path).unwrap_err();
    assert!(matches!(e, SandboxError::NotWasm { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("`notes.wasm` is not a WebAssembly file"),
        "{msg}"
    );
}

#[test]
fn a_core_module_instead_of_a_component() {
    let (_d, path) = write_temp("core.wasm", b"\0asm\x01\0\0\0");
    let e = sandbox().load_file(&path).unwrap_err();
    assert!(matches!(e, SandboxError::CoreModule { .. }), "{e}");
    assert!(e.to_string().contains("wasm32-wasip2"), "{e}");
}

#[test]
fn a_component_for_another_world() {
    let e = sandbox()
        .load_bytes("empty.wasm", b"(component)")
        .unwrap_err();
    // WAT text is not Wasm bytes: the header check catches it first.
    assert!(matches!(e, SandboxError::NotWasm { .. }), "{e}");

    // A real component that exports something else entirely.
    let other = wat_component(r#"(export "acme:thing/run" (instance $inst))"#);
    let e = sandbox().load_bytes("other.wasm", &other).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SandboxError::WrongWorld { .. }), "{msg}");
    assert!(msg.contains("`other.wasm` is for another world"), "{msg}");
    assert!(msg.contains("acme:thing/run"), "{msg}");

    // The right interface name at a version this host does not implement.
    let future = wat_component(r#"(export "weir:udf/filter@9.0.0" (instance $inst))"#);
    let msg = sandbox()
        .load_bytes("future.wasm", &future)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("weir:udf/filter@9.0.0"), "{msg}");
    assert!(msg.contains("weir:udf@0.1.0"), "{msg}");

    // The right name with the wrong types.
    let wrong = wat_component(r#"(export "weir:udf/filter@0.1.0" (instance $inst))"#);
    let msg = sandbox()
        .load_bytes("wrong-types.wasm", &wrong)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("for another world"), "{msg}");
    assert!(msg.contains("not with the types"), "{msg}");
}

/// A minimal component exporting one instance with a function `f`.
fn wat_component(export: &str) -> Vec<u8> {
    let text = format!(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $inst (export "f" (func $f)))
            {export})"#
    );
    // The sandbox takes binaries, as uploads are.
    wat::parse_str(&text).expect("valid WAT")
}

#[test]
fn a_guest_that_traps_shows_its_panic_message() {
    let mut inst = misbehave("trap", InstanceLimits::default());
    let out = inst.process(batch(&[("a", "fine", 1)])).unwrap();
    assert_eq!(out.len(), 1);
    let e = inst
        .process(batch(&[("a", "fine", 1), ("b", "boom", 2)]))
        .unwrap_err();
    let msg = e.to_string();
    match failure(e) {
        GuestFailure::Trap { console, .. } => {
            assert!(
                console.contains("misbehave: refusing record 1 on purpose"),
                "{console}"
            );
        }
        other => panic!("expected a trap, got {other}"),
    }
    assert!(msg.contains("failed in `map-batch`"), "{msg}");
    // The instance is now poisoned, and says so instead of misbehaving.
    let again = inst.process(batch(&[("a", "fine", 1)])).unwrap_err();
    assert!(matches!(failure(again), GuestFailure::Poisoned));
}

#[test]
fn a_guest_in_an_endless_loop_is_stopped_at_its_deadline() {
    let limits = InstanceLimits {
        call_deadline: Duration::from_millis(200),
        ..InstanceLimits::default()
    };
    let mut inst = misbehave("spin", limits);
    let start = std::time::Instant::now();
    let e = inst.process(batch(&[("x", "boom", 1)])).unwrap_err();
    let took = start.elapsed();
    match failure(e) {
        GuestFailure::DeadlineExceeded { deadline } => {
            assert_eq!(deadline, Duration::from_millis(200))
        }
        other => panic!("expected a deadline, got {other}"),
    }
    // Stopped, not left running: far less than "forever" even on a loaded machine.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn a_guest_growing_memory_past_its_cap_is_stopped() {
    let limits = InstanceLimits {
        memory_bytes: 32 << 20,
        ..InstanceLimits::default()
    };
    let mut inst = misbehave("hog", limits);
    let e = inst.process(batch(&[("x", "boom", 1)])).unwrap_err();
    match failure(e) {
        GuestFailure::MemoryCapExceeded { requested, cap } => {
            assert_eq!(cap, 32 << 20);
            assert!(requested > cap);
        }
        other => panic!("expected the memory cap, got {other}"),
    }
}

#[test]
fn a_guest_returning_an_error_keeps_its_message() {
    let mut inst = misbehave("error", InstanceLimits::default());
    let e = inst.process(batch(&[("x", "boom", 1)])).unwrap_err();
    match failure(e) {
        GuestFailure::Returned(m) => assert!(m.contains("record 0 is unacceptable"), "{m}"),
        other => panic!("expected a returned error, got {other}"),
    }
}

#[test]
fn a_guest_rejecting_its_config_names_the_key() {
    let m = sandbox().load_file(&udf("bid-filter")).unwrap();
    let config = vec![("min_price".to_string(), "lots".to_string())];
    let label = InstanceLabel {
        job: "test".into(),
        operator: "f".into(),
        subtask: 0,
    };
    let e = m
        .instantiate(label, InstanceLimits::default(), &config)
        .unwrap_err()
        .to_string();
    assert!(e.contains("failed in `init`"), "{e}");
    assert!(e.contains("`min_price`"), "{e}");
}

/// A small deterministic generator (xorshift), so a failing case can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Cuts, duplicates, swaps and replaces pieces of `text`.
fn mutate(rng: &mut Rng, text: &str) -> String {
    const PIECES: &[&str] = &[
        "=",
        "\"",
        "[",
        "]",
        "{",
        "}",
        "\n",
        ",",
        "0",
        "-1",
        "1e999",
        "\"\"",
        "[job]",
        "[source.x]",
        "kind = \"file\"",
        "input = \"nope\"",
        "parallelism = 0",
        "window = {}",
        "é",
        "\u{0}",
        "module = \"\"",
        "= =",
        "#",
    ];
    let mut s: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 if !s.is_empty() => {
                let end = (at + 1 + rng.below(20)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let piece = PIECES[rng.below(PIECES.len())];
                s.splice(at..at, piece.chars());
            }
            2 if !s.is_empty() => {
                let from = rng.below(s.len());
                let end = (from + rng.below(40)).min(s.len());
                let copy: Vec<char> = s[from..end].to_vec();
                s.splice(at..at, copy);
            }
            _ if at < s.len() => s[at] = char::from(b' ' + (rng.below(95) as u8)),
            _ => {}
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_job_files_never_panic_the_parser_and_errors_name_a_line_in_the_file() {
    let root = weir_tests::root();
    let seeds: Vec<(String, String)> = [
        "udfs/jobs/bids-demo.toml",
        "udfs/jobs/bids-window-count.toml",
        "udfs/examples/ad-ctr/job.toml",
        "udfs/examples/ad-ctr/kafka.toml",
        "udfs/examples/fraud/job.toml",
        "udfs/examples/sessions/job.toml",
    ]
    .iter()
    .map(|p| {
        (
            p.to_string(),
            std::fs::read_to_string(root.join(p)).unwrap(),
        )
    })
    .collect();
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let (mut refused, mut accepted) = (0, 0);
    for case in 0..3_000 {
        let (name, seed) = &seeds[case % seeds.len()];
        let text = mutate(&mut rng, seed);
        let path = std::path::Path::new("fuzzed.toml");
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            weir_job::parse_job(path, &text)
        }));
        let Ok(parsed) = parsed else {
            panic!("case {case} (from {name}) panicked the parser on:\n{text}");
        };
        match parsed {
            Ok(_) => accepted += 1,
            Err(weir_job::JobError::At {
                file,
                line,
                message,
            }) => {
                refused += 1;
                assert_eq!(file, path);
                let lines = text.lines().count().max(1);
                assert!(
                    (1..=lines + 1).contains(&line),
                    "case {case}: line {line} of a {lines}-line file: {message}\n{text}"
                );
                assert!(!message.trim().is_empty(), "case {case}: empty message");
            }
            Err(other) => panic!("case {case}: unexpected error kind {other}"),
        }
    }
    // The mutations exercise both paths.
    assert!(
        refused > 1_000 && accepted > 50,
        "refused {refused}, accepted {accepted}"
    );
}

#[test]
fn mutated_components_are_refused_with_the_modules_name_and_never_panic() {
    let original = std::fs::read(udf("bid-filter")).unwrap();
    let mut rng = Rng(0x0dd_ba11_5eed);
    for case in 0..40 {
        let mut bytes = original.clone();
        match case % 4 {
            0 => bytes.truncate(rng.below(bytes.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
            }
            2 => {
                let at = rng.below(bytes.len());
                bytes.splice(at..at, (0..rng.below(64)).map(|_| rng.next() as u8));
            }
            _ => bytes = (0..rng.below(4096)).map(|_| rng.next() as u8).collect(),
        }
        let name = format!("fuzzed-{case}");
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sandbox().load_bytes(&name, &bytes).map(|_| ())
        }));
        match loaded {
            Err(_) => panic!("case {case}: loading panicked"),
            // A byte flip can land in a custom section or padding and leave
            // a valid component.
            Ok(Ok(())) => {}
            Ok(Err(e)) => assert!(
                e.to_string().contains(&format!("`{name}`")),
                "case {case}: {e}"
            ),
        }
    }
}

#[test]
fn a_component_of_very_many_functions_is_refused_before_it_is_compiled() {
    // 150,000 functions in about 0.5 MB: compiling them would take the
    // host seconds of CPU and gigabytes of memory.
    let bytes = many_functions(150_000);
    assert!(bytes.len() < 1 << 20, "{}", bytes.len());
    let started = std::time::Instant::now();
    let e = sandbox().load_bytes("swarm.wasm", &bytes).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SandboxError::OverBudget { .. }), "{msg}");
    assert!(
        msg.contains(
            "module `swarm.wasm` is over the compile budget: 150000 functions, at most 100000"
        ),
        "{msg}"
    );
    // Refused by reading its sections, not by compiling them: far under
    // the seconds a compilation of this size takes (a generous bound, not
    // a benchmark).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_compilation_past_its_time_limit_is_abandoned_with_a_clear_error() {
    let budget = weir_sandbox::CompileBudget {
        compile_timeout: Duration::from_millis(1),
        ..weir_sandbox::CompileBudget::default()
    };
    let sandbox = weir_sandbox::Sandbox::new(weir_sandbox::SandboxConfig {
        max_instances: 2,
        budget,
        ..weir_sandbox::SandboxConfig::default()
    })
    .unwrap();
    // Within every limit of shape, but more than a millisecond of work.
    let bytes = many_functions(20_000);
    let e = sandbox.load_bytes("slow.wasm", &bytes).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SandboxError::CompileTimeout { .. }), "{msg}");
    assert!(
        msg.contains("module `slow.wasm` took longer than 1ms to compile"),
        "{msg}"
    );
    // The abandoned compilation runs to its end and caches its result; the
    // same bytes uploaded again are still refused, not served from the
    // cache.
    let compiled_by = Instant::now() + Duration::from_secs(120);
    while sandbox.cache().stats().compiled == 0 {
        assert!(
            Instant::now() < compiled_by,
            "the abandoned compilation never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // (It is in the cache just after it counts as compiled.)
    std::thread::sleep(Duration::from_millis(500));
    let again = sandbox.load_bytes("slow-again.wasm", &bytes).unwrap_err();
    assert!(
        matches!(again, SandboxError::CompileTimeout { .. }),
        "{again}"
    );
}
