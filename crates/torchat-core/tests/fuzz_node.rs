//! The node fuzz target's code path (`tests/common/drive.rs`, shared with
//! `fuzz/fuzz_targets/node.rs`) as a property test: arbitrary byte strings drive accepts,
//! connects, data, closes, timers and user commands; nothing panics and every table stays
//! within its cap. 256 cases per run (`PROPTEST_CASES` for more); the long runs are
//! recorded in docs/fuzzing.md.
#![allow(clippy::unwrap_used)]

mod common;

use common::drive::Driver;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_steps_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let d = Driver::run(&data);
        d.check();
    }
}

/// The driver reaches the interesting states: sessions authenticate, requests and invites
/// appear (so the property above is not vacuous).
#[test]
fn the_driver_reaches_sessions_requests_and_invites() {
    let mut reached = (false, false, false);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..400 {
        let data: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let d = Driver::run(&data);
        reached.0 |= d.online_seen;
        reached.1 |= !d.node.requests().is_empty();
        reached.2 |= d
            .node
            .groups()
            .iter()
            .any(|g| g.state == torchat_core::GroupState::Invited);
    }
    assert_eq!(reached, (true, true, true));
}
