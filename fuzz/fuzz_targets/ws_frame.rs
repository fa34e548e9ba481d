#![no_main]
//! `swarmbridge::fuzzing::ws_frame`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::ws_frame(data));
