//! Any bytes as a `.env`: parsed or refused with an error, never a panic; a parsed file's
//! entries name lines that exist.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new(".env");
    if let Ok(file) = devbox::EnvFile::parse(path, data, &|_| None) {
        let lines = data.split(|&b| b == b'\n').count();
        for (_, _, line) in &file.entries {
            assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
        }
    }
});
