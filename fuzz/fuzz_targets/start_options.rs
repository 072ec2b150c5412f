//! Any text as `--gpus`, `-p`, `-v`, `--shm-size` and `-e` values: accepted or refused with an
//! error, never a panic; what is accepted is well-formed.
#![no_main]

use devbox::start_options as options;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(gpus) = options::parse_gpus(text) {
        assert!(gpus.count == -1 || gpus.count > 0 || !gpus.device_ids.is_empty());
    }
    if let Ok(ports) = options::parse_publish(text) {
        assert!(!ports.is_empty());
        assert!(ports.iter().all(|p| p.container_port > 0));
    }
    if let Ok(size) = options::parse_size(text) {
        assert!(size > 0);
    }
    if let Ok((key, _)) = options::parse_env(text, |_| None) {
        assert!(!key.is_empty());
    }
    if let Ok(volume) = options::parse_volume(text, std::path::Path::new("/nonexistent-project"), true) {
        assert!(volume.target.starts_with('/'));
    }
});
