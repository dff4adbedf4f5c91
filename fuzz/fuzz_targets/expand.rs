#![no_main]
// Target `expand`: see proxymap::fuzz_api::expand.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::expand(data));
