#![no_main]
// Target `memcache_reply`: see proxymap::fuzz_api::memcache_reply.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::memcache_reply(data));
