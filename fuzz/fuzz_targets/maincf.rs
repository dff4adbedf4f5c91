#![no_main]
// Target `maincf`: see proxymap::fuzz_api::maincf.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::maincf(data));
