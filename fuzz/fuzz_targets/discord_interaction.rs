#![no_main]
//! `swarmbridge::fuzzing::discord_interaction`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::discord_interaction(data));
