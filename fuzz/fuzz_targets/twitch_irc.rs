#![no_main]
//! `swarmbridge::fuzzing::twitch_irc`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::twitch_irc(data));
