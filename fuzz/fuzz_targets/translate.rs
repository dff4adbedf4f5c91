#![no_main]
// Target `translate`: see proxymap::fuzz_api::translate.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::translate(data));
