#![no_main]
// Target `pcre_rules`: see proxymap::fuzz_api::pcre_rules.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::pcre_rules(data));
