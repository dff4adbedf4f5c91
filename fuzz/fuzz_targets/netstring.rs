#![no_main]
// Target `netstring`: see proxymap::fuzz_api::netstring.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::netstring(data));
