#![no_main]
// Target `hash_pages`: see proxymap::fuzz_api::hash_pages.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::hash_pages(data));
