#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::sse_frame::run(
    data,
    ringcast_fuzz::strict()
));
