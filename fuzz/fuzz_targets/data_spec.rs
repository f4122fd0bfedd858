#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kiln_cli::fuzz::data_spec(data));
