#![no_main]
// Target `regexp_rules`: see proxymap::fuzz_api::regexp_rules.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::regexp_rules(data));
