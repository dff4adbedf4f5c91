#![no_main]
// Target `texthash`: see proxymap::fuzz_api::texthash.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::texthash(data));
