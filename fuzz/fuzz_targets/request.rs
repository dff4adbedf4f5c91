#![no_main]
// Target `request`: see proxymap::fuzz_api::request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::request(data));
