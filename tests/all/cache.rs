//! Modules are compiled once and cached on disk by content hash.

use weir_sandbox::{Sandbox, SandboxConfig};
use weir_tests::udf;

#[test]
fn compiled_once_then_loaded_from_disk_by_a_new_process_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let config = cached_in(dir.path());
    let path = udf("bid-filter");

    let first = Sandbox::new(config.clone()).unwrap();
    let a = first.load_file(&path).unwrap();
    let b = first.load_file(&path).unwrap();
    assert_eq!(a.digest(), b.digest());
    let s = first.cache().stats();
    assert_eq!((s.compiled, s.memory_hits, s.loaded_from_disk), (1, 1, 0));
    drop(first);

    // A fresh sandbox (as a new `weir run` would be) maps the artifact in.
    let second = Sandbox::new(config).unwrap();
    let c = second.load_file(&path).unwrap();
    assert_eq!(c.digest(), a.digest());
    let s = second.cache().stats();
    assert_eq!((s.compiled, s.loaded_from_disk), (0, 1));

    // The artifact is named by the component's sha256.
    let cached: Vec<_> = walk(dir.path());
    assert!(
        cached
            .iter()
            .any(|p| p.ends_with(format!("{}.cwasm", a.digest().hex()))),
        "{cached:?}"
    );
}

#[test]
fn a_corrupt_artifact_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let config = cached_in(dir.path());
    let path = udf("bid-filter");
    let digest = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&path)
        .unwrap()
        .digest();
    let artifact = walk(dir.path())
        .into_iter()
        .find(|p| p.ends_with(format!("{}.cwasm", digest.hex())))
        .unwrap();
    std::fs::write(&artifact, b"garbage").unwrap();
    let again = Sandbox::new(config).unwrap();
    again.load_file(&path).unwrap();
    assert_eq!(again.cache().stats().compiled, 1);
}

fn cached_in(dir: &std::path::Path) -> SandboxConfig {
    SandboxConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_instances: 8,
        ..SandboxConfig::default()
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
