#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookway_proxy::fuzzing::http1_response_target(data));
