#![no_main]
//! cargo-fuzz target `duration`: see `leasehold_reliability::fuzz::duration`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    leasehold_fuzz::bodies::duration(data);
});
