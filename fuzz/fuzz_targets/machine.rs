#![no_main]
//! cargo-fuzz target `machine`: see `leasehold_reliability::fuzz::machine`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    leasehold_fuzz::bodies::machine(data);
});
