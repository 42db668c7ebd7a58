//! A job file, as a tenant submits it: any text parses to a job or to an
//! error naming a line; it never panics. An error's line is within the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = std::path::Path::new("job.toml");
    if let Err(e) = weir_job::parse_job(path, text) {
        let message = e.to_string();
        if let Some(rest) = message.strip_prefix("job.toml:") {
            let line: usize = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(
                line <= text.lines().count() + 1,
                "line {line} of a {}-line file: {message}",
                text.lines().count()
            );
        }
    }
});
