//! The setup's detection of system prerequisites (`.ci/lib/prereqs.sh`).
//!
//! A fresh machine has look-alikes of what the build needs: the C++
//! interface library `libclang-cpp.so.14` but not the `libclang.so` that
//! bindgen loads, OpenSSL's runtime but not its headers, GCC's `stddef.h`
//! but not clang's. Each prerequisite is checked twice, in a directory
//! layout (and a `PATH`) of its own: with only its look-alikes, where the
//! check must say "missing", and with the genuine files, where it must say
//! "present" — so a check that always answers one way fails here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const MULTIARCH: &str = "x86_64-linux-gnu";

/// A fake machine: files under a root, executables in its `bin`.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn file(self, path: &str) -> Self {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"").unwrap();
        self
    }

    /// A symlink at `path` to `target` (relative to the link's directory).
    fn link(self, path: &str, target: &str) -> Self {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &p).unwrap();
        self
    }

    /// An executable `bin/name` that prints `output` and exits 0.
    fn tool(self, name: &str, output: &str) -> Self {
        let p = self.root().join("bin").join(name);
        let script = format!("#!/bin/sh\ncat <<'OUT'\n{output}\nOUT\n");
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// Runs `check_<name>` with files under this root and only this
    /// layout's `bin` (and the shell's own tools) on `PATH`.
    fn check(&self, name: &str) -> bool {
        let lib = weir_tests::root().join(".ci/lib/prereqs.sh");
        // The checks use only shell builtins and these coreutils.
        let shell_tools = self.root().join("shell-tools");
        std::fs::create_dir_all(&shell_tools).unwrap();
        for tool in ["sort", "head", "grep", "awk", "tr", "sed", "printf", "cat"] {
            let link = shell_tools.join(tool);
            if !link.exists() {
                let real = which(tool);
                std::os::unix::fs::symlink(real, link).unwrap();
            }
        }
        let path = format!(
            "{}:{}",
            self.root().join("bin").display(),
            shell_tools.display()
        );
        let status = Command::new("/bin/bash")
            .arg("-c")
            .arg(format!("source '{}' && check_{name}", lib.display()))
            .env_clear()
            .env("PATH", path)
            .env("PREREQ_ROOT", self.root())
            .env("PREREQ_MULTIARCH", MULTIARCH)
            .status()
            .unwrap();
        status.success()
    }
}

fn which(tool: &str) -> String {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("`{tool}` is not installed");
}

/// Asserts the check says "missing" with the look-alikes and "present"
/// with the genuine files.
fn missing_with_lookalikes_present_with_the_real_thing(
    name: &str,
    lookalikes: Layout,
    real: Layout,
) {
    assert!(
        !lookalikes.check(name),
        "check_{name} took look-alikes for the real thing (layout {})",
        lookalikes.root().display()
    );
    assert!(
        real.check(name),
        "check_{name} did not find the genuine files (layout {})",
        real.root().display()
    );
}

#[test]
fn libclang_is_the_library_bindgen_loads_not_libclang_cpp() {
    let lookalikes = Layout::new()
        .file("usr/lib/llvm-14/lib/libclang-cpp.so.14")
        .file(&format!("usr/lib/{MULTIARCH}/libclang-cpp.so.14"))
        .file("usr/lib/llvm-14/lib/libLLVM-14.so")
        // A dangling link is no library either.
        .link(
            "usr/lib/llvm-14/lib/libclang.so",
            "../../x86_64-linux-gnu/libclang-14.so.1",
        );
    // Debian's libclang-14-dev and libclang1-14.
    let real = Layout::new()
        .file(&format!("usr/lib/{MULTIARCH}/libclang-14.so.14.0.6"))
        .link(
            &format!("usr/lib/{MULTIARCH}/libclang-14.so.1"),
            "libclang-14.so.14.0.6",
        )
        .link(
            "usr/lib/llvm-14/lib/libclang.so",
            &format!("../../{MULTIARCH}/libclang-14.so.1"),
        );
    missing_with_lookalikes_present_with_the_real_thing("libclang", lookalikes, real);
}

#[test]
fn clang_headers_are_clangs_not_gccs() {
    let lookalikes = Layout::new()
        .file("usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h")
        .file("usr/lib/llvm-14/include/llvm/Config/llvm-config.h");
    let real = Layout::new().file("usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h");
    missing_with_lookalikes_present_with_the_real_thing("clang_headers", lookalikes, real);
}

#[test]
fn a_cxx_compiler_needs_the_command_and_the_standard_library_headers() {
    // gcc and cpp, and libstdc++'s runtime, but no c++ headers.
    let lookalikes = Layout::new()
        .tool("gcc", "gcc (Debian 12.2.0-14) 12.2.0")
        .tool("cpp", "cpp (Debian 12.2.0-14) 12.2.0")
        .tool("c++", "c++ (Debian 12.2.0-14) 12.2.0")
        .file(&format!("usr/lib/{MULTIARCH}/libstdc++.so.6"));
    let real = Layout::new()
        .tool("c++", "c++ (Debian 12.2.0-14) 12.2.0")
        .file("usr/include/c++/12/iostream");
    missing_with_lookalikes_present_with_the_real_thing("cxx", lookalikes, real);
}

#[test]
fn make_is_gnu_make() {
    let lookalikes = Layout::new()
        .tool("cmake", "cmake version 3.25.1")
        .tool("make", "bmake 20220208");
    let real = Layout::new().tool("make", "GNU Make 4.3");
    missing_with_lookalikes_present_with_the_real_thing("make", lookalikes, real);
}

#[test]
fn pkg_config_is_the_command_not_its_library() {
    let lookalikes = Layout::new().file(&format!("usr/lib/{MULTIARCH}/libpkgconf.so.3"));
    let real = Layout::new().tool("pkg-config", "1.8.1");
    missing_with_lookalikes_present_with_the_real_thing("pkg_config", lookalikes, real);
}

#[test]
fn openssl_needs_headers_and_its_pkg_config_file_not_the_runtime() {
    let lookalikes = Layout::new()
        .file(&format!("usr/lib/{MULTIARCH}/libssl.so.3"))
        .file(&format!("usr/lib/{MULTIARCH}/libgnutls-openssl.so.27"))
        .file("usr/include/gnutls/openssl.h")
        .tool("openssl", "OpenSSL 3.0.19 27 Jan 2026");
    let real = Layout::new()
        .file("usr/include/openssl/ssl.h")
        .file(&format!("usr/lib/{MULTIARCH}/pkgconfig/openssl.pc"));
    missing_with_lookalikes_present_with_the_real_thing("openssl_dev", lookalikes, real);
}

#[test]
fn protoc_is_new_enough_for_proto3_optional() {
    let lookalikes = Layout::new().tool("protoc", "libprotoc 3.6.1");
    let real = Layout::new().tool("protoc", "libprotoc 3.21.12");
    missing_with_lookalikes_present_with_the_real_thing("protoc", lookalikes, real);
    // protoc 22 and later number themselves by their minor version.
    assert!(
        Layout::new()
            .tool("protoc", "libprotoc 29.3")
            .check("protoc")
    );
    assert!(
        !Layout::new()
            .tool("protoc", "libprotoc 2.6.1")
            .check("protoc")
    );
}

#[test]
fn kcat_is_kcat_not_the_library_or_another_client() {
    let lookalikes = Layout::new()
        .file(&format!("usr/lib/{MULTIARCH}/librdkafka.so.1"))
        .tool("kcat", "kafka-console-consumer 3.7");
    let real = Layout::new().tool(
        "kcat",
        "kcat - Apache Kafka producer and consumer tool\nVersion 1.7.1",
    );
    missing_with_lookalikes_present_with_the_real_thing("kcat", lookalikes, real);
}

#[test]
fn patch_is_gnu_patch_not_patchelf() {
    let lookalikes = Layout::new()
        .tool("patchelf", "patchelf 0.14.3")
        .tool("diff", "diff (GNU diffutils) 3.8");
    let real = Layout::new().tool("patch", "GNU patch 2.7.6");
    missing_with_lookalikes_present_with_the_real_thing("patch", lookalikes, real);
}

#[test]
fn node_is_new_enough_and_comes_with_npm() {
    let lookalikes = Layout::new().tool("node", "v12.22.12").tool("npm", "7.5.2");
    let real = Layout::new()
        .tool("node", "v20.20.2")
        .tool("npm", "11.19.1");
    missing_with_lookalikes_present_with_the_real_thing("node", lookalikes, real);
    // node without npm is not enough either.
    assert!(!Layout::new().tool("node", "v20.20.2").check("node"));
}

#[test]
fn etcd_is_the_server_3_4_or_later_not_etcdctl() {
    let lookalikes = Layout::new()
        .tool("etcdctl", "etcdctl version: 3.4.23\nAPI version: 3.4")
        .tool("etcd", "etcd Version: 3.2.26\nGit SHA: Not provided");
    let real = Layout::new().tool(
        "etcd",
        "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8",
    );
    missing_with_lookalikes_present_with_the_real_thing("etcd", lookalikes, real);
}

#[test]
fn setup_installs_every_prerequisite_it_checks() {
    // Every prerequisite the setup checks names a package to install, and
    // an empty machine needs them all.
    let lib = weir_tests::root().join(".ci/lib/prereqs.sh");
    let empty = Layout::new();
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && prereq_missing_packages \"${{PREREQS_BUILD[@]}}\" \"${{PREREQS_TEST[@]}}\"",
            lib.display()
        ))
        .env("PATH", format!("{}:/usr/bin:/bin", empty.root().join("bin").display()))
        .env("PREREQ_ROOT", empty.root())
        .env("PREREQ_MULTIARCH", MULTIARCH)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packages = String::from_utf8(out.stdout).unwrap();
    let packages: Vec<&str> = packages.split_whitespace().collect();
    // Commands such as make and kcat may exist on this machine's PATH; the
    // file-based ones are missing under the empty root whatever the machine.
    for expected in ["libclang-dev", "g++", "libssl-dev"] {
        assert!(
            packages.contains(&expected),
            "{expected} not in {packages:?}"
        );
    }
    // One install line, no package twice (libclang and its headers share one).
    let mut unique = packages.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), packages.len(), "{packages:?}");
}
