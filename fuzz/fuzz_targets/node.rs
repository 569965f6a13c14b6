//! The protocol core driven by arbitrary input: accepts, connects, data on any connection
//! (templated lines, raw bytes, floods), closes, timers and user commands. Must never panic
//! and every table must stay within its cap. The driver is shared with the core's property
//! test (`crates/torchat-core/tests/fuzz_node.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/torchat-core/tests/common/drive.rs"]
mod drive;

fuzz_target!(|data: &[u8]| {
    let d = drive::Driver::run(data);
    d.check();
});
