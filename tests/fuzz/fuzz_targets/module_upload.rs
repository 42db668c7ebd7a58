//! A module upload as a tenant streams it: a header (name, version, the
//! size it announces), then chunks or more headers, in any order and size;
//! the assembled bytes then go through the checks made before compiling
//! (the Wasm header, the world, the compile budget). Never a panic, never
//! more bytes kept than announced.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir_sandbox::CompileBudget;
use weir_sandbox::upload::Upload;

#[derive(Arbitrary, Debug)]
enum Part {
    Header {
        name: String,
        version: String,
        size: u64,
    },
    Chunk(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Stream {
    name: String,
    version: String,
    size: u64,
    parts: Vec<Part>,
}

const LIMIT: u64 = 1 << 20;

fuzz_target!(|s: Stream| {
    let Ok(mut upload) = Upload::start(&s.name, &s.version, s.size, LIMIT) else {
        return;
    };
    assert!(s.size <= LIMIT);
    for part in s.parts {
        match part {
            Part::Chunk(c) => {
                if upload.chunk(&c).is_err() {
                    return;
                }
            }
            Part::Header { .. } => {
                let _ = upload.second_header();
                return;
            }
        }
    }
    let Ok(bytes) = upload.finish() else {
        return;
    };
    assert_eq!(bytes.len() as u64, s.size);
    let _ = weir_sandbox::budget::check("upload.wasm", &bytes, &CompileBudget::default());
});
