//! Arbitrary PODGATE_* environments: parsing never panics, and every
//! reported error names a variable that was set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podgate::config::{Config, VARS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut vars = Vec::new();
    for (i, part) in text.split('\n').enumerate() {
        let name = VARS[i % VARS.len()].name;
        vars.push((format!("PODGATE_{name}"), part.to_string()));
    }
    if let Err(e) = Config::from_vars(vars.clone()) {
        for err in &e.errors {
            assert!(vars.iter().any(|(k, _)| *k == err.var), "{} was not set", err.var);
        }
    }
});
