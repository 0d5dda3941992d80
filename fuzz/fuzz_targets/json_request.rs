#![no_main]
//! cargo-fuzz target `json_request`: see `leasehold_reliability::fuzz::json_request`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    leasehold_fuzz::bodies::json_request(data);
});
