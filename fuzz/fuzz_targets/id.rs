#![no_main]
//! cargo-fuzz target `id`: see `leasehold_reliability::fuzz::id`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    leasehold_fuzz::bodies::id(data);
});
