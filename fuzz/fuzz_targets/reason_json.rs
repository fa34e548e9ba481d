#![no_main]
//! `swarmbridge::fuzzing::reason_json`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::reason_json(data));
