//! The watchdog's configuration from an arbitrary environment (one
//! `NAME=value` per line): a `Config` or an error naming the variable.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let _ = watchdog::Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned()));
});
