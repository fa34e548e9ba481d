#![no_main]
//! `swarmbridge::fuzzing::reason_sse`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::reason_sse(data));
