#![no_main]
//! `swarmbridge::fuzzing::mcp_request`: see its doc comment.

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarmbridge::fuzzing::mcp_request(data));
