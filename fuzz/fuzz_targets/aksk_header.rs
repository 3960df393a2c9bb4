#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookway_proxy::fuzzing::aksk_header_target(data));
