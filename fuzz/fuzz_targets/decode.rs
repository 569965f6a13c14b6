//! Arbitrary bytes, split into arbitrary chunks, through the framing and packet decoder: must
//! never panic and never hold more than the line cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchat_wire::PacketDecoder;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, the second the line cap.
    let (Some(&c), Some(&m)) = (data.first(), data.get(1)) else { return };
    let chunk = usize::from(c).max(1);
    let cap = usize::from(m) * 16 + 1;
    let mut dec = PacketDecoder::new(cap);
    for part in data[2..].chunks(chunk) {
        dec.feed_with(part, |_| {});
        assert!(dec.pending() <= cap);
    }
});
