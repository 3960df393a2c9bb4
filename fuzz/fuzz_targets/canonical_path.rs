#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookway_proxy::fuzzing::canonical_path_target(data));
