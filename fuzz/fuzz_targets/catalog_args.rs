#![no_main]
//! `swarmbridge::fuzzing::catalog_args`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::catalog_args(data));
