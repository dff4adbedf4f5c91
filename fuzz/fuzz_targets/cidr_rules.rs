#![no_main]
// Target `cidr_rules`: see proxymap::fuzz_api::cidr_rules.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::cidr_rules(data));
