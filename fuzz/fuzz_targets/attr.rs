#![no_main]
// Target `attr`: see proxymap::fuzz_api::attr.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::attr(data));
