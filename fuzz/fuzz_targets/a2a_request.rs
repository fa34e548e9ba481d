#![no_main]
//! `swarmbridge::fuzzing::a2a_request`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::a2a_request(data));
