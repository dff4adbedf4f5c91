#![no_main]
// Target `db_cf`: see proxymap::fuzz_api::db_cf.
libfuzzer_sys::fuzz_target!(|data: &[u8]| proxymap::fuzz_api::db_cf(data));
