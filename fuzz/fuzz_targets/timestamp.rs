#![no_main]
//! cargo-fuzz target `timestamp`: see `leasehold_reliability::fuzz::timestamp`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    leasehold_fuzz::bodies::timestamp(data);
});
