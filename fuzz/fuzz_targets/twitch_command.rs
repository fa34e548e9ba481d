#![no_main]
//! `swarmbridge::fuzzing::twitch_command`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::twitch_command(data));
