//! decode → encode → decode: whatever a line decodes to must encode to a line that decodes to
//! the same packet (the codec never produces something it cannot read back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchat_wire::Packet;

fuzz_target!(|line: &[u8]| {
    if line.contains(&b'\n') {
        return;
    }
    if let Ok(p) = Packet::decode(line) {
        let enc = p.encode();
        assert_eq!(enc.last(), Some(&b'\n'));
        let again = Packet::decode(&enc[..enc.len() - 1]).expect("re-decodes");
        assert_eq!(again, p);
    }
});
