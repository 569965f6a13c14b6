//! The scenario files in `scenarios/`, run with assertions on what each member shows.
#![allow(clippy::unwrap_used)]

use torchat_sim::{Options, Report, Scenario, Sim, Trust};

fn load(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).unwrap()
}

/// Runs every seed of a scenario; fails on any invariant violation.
fn run_clean(sc: &Scenario) -> Vec<Report> {
    sc.seeds
        .iter()
        .map(|&seed| {
            let r = torchat_sim::run(sc, seed).unwrap();
            assert!(
                r.violations.is_empty(),
                "{} seed {seed}: invariant violations:\n{}",
                sc.name,
                r.to_text()
            );
            r
        })
        .collect()
}

fn nodes_with(r: &Report, text: &str, pred: impl Fn(&Trust) -> bool) -> Vec<usize> {
    r.message(text)
        .unwrap()
        .displays
        .iter()
        .filter(|d| pred(&d.last))
        .map(|d| d.node)
        .collect()
}

/// (a) The seed's own example: 11 members, the speaker cannot reach 2 of them.
#[test]
fn seed_example_direct_and_8_of_10() {
    let sc = load("seed-example");
    for r in run_clean(&sc) {
        let text = "I'm partially disconnected from 2 users";
        let m = r.message(text).unwrap();
        assert_eq!(m.delivered, 10, "{}", r.to_text());
        let direct = nodes_with(&r, text, |t| matches!(t, Trust::Direct { .. }));
        assert_eq!(direct, (1..=8).collect::<Vec<_>>(), "{}", r.to_text());
        for d in m.displays.iter().filter(|d| d.node >= 9) {
            assert_eq!(d.first, Trust::Relayed { k: 8, n: 10 });
            assert_eq!(d.last, Trust::Relayed { k: 8, n: 10 });
            assert_eq!(d.label, "(8 of 10)");
            // Shown after the settle window that the first claim opened.
            assert!(d.shown_at >= m.at + 10.0, "{d:?}");
            assert!(d.shown_at <= m.at + 13.0, "{d:?}");
        }
        for d in m.displays.iter().filter(|d| d.node <= 8) {
            assert_eq!(d.label, "(Direct)");
            assert_eq!(d.first, Trust::Direct { confirmations: 0 });
            assert_eq!(d.last, Trust::Direct { confirmations: 7 });
        }
        // Every one of the 8 direct receivers echoed to the 9 members other than itself and
        // the speaker.
        assert_eq!(r.totals.message_lines, 8);
        assert_eq!(r.totals.echo_lines, 8 * 9);
    }
}

/// (b) A forged echo: n5 claims n0 said something; n0 never did and is connected to all.
#[test]
fn forged_echo_is_unconfirmed_with_k_1() {
    let sc = load("forged-echo");
    for r in run_clean(&sc) {
        let forged = r.message("send the money to n5").unwrap();
        assert_eq!(forged.forged_by, Some(5));
        let shown: Vec<usize> = forged.displays.iter().map(|d| d.node).collect();
        assert_eq!(shown, vec![1, 2, 3, 4], "{}", r.to_text());
        for d in &forged.displays {
            assert_eq!(d.first, Trust::Unconfirmed { k: 1, n: 5 });
            assert_eq!(d.last, Trust::Unconfirmed { k: 1, n: 5 });
            assert_eq!(d.label, "(UNCONFIRMED 1 of 5)");
            assert_eq!(d.claimants, vec![5]);
        }
        // The genuine message is unaffected.
        let real = r.message("a real message").unwrap();
        assert_eq!(real.delivered, 5);
        assert!(real
            .displays
            .iter()
            .all(|d| matches!(d.last, Trust::Direct { .. })));
    }
}

/// (c) Repeated identical messages from one speaker are counted separately.
#[test]
fn repeated_messages_are_separate() {
    let sc = load("repeated");
    for r in run_clean(&sc) {
        let oks = r.messages_with("ok");
        assert_eq!(oks.len(), 3);
        for m in oks {
            assert_eq!(m.delivered, 5, "{}", r.to_text());
            for d in &m.displays {
                if d.node == 5 {
                    assert_eq!(d.last, Trust::Relayed { k: 4, n: 5 }, "{}", r.to_text());
                } else {
                    assert_eq!(d.last, Trust::Direct { confirmations: 3 });
                }
            }
        }
        // n5 shows three distinct "ok" messages, at three distinct moments.
        let mut at5: Vec<f64> = r
            .messages_with("ok")
            .iter()
            .flat_map(|m| {
                m.displays
                    .iter()
                    .filter(|d| d.node == 5)
                    .map(|d| d.shown_at)
            })
            .collect();
        at5.dedup();
        assert_eq!(at5.len(), 3);
    }
}

/// (d) A late direct copy (the link heals, the speaker's outbox delivers) upgrades
/// `(k of N)` to `(Direct)`.
#[test]
fn late_direct_copy_upgrades_to_direct() {
    let sc = load("late-direct");
    for r in run_clean(&sc) {
        let m = r.message("are you there?").unwrap();
        let d = m.displays.iter().find(|d| d.node == 5).unwrap();
        assert_eq!(d.first, Trust::Relayed { k: 4, n: 5 }, "{}", r.to_text());
        assert_eq!(
            d.last,
            Trust::Direct { confirmations: 4 },
            "{}",
            r.to_text()
        );
        assert!(d.updates >= 1);
        assert!(d.shown_at >= m.at + 10.0 && d.shown_at < 60.0, "{d:?}");
        assert_eq!(m.delivered, 5);
    }
}

/// (e) A member leaving during a partition ends up removed everywhere after the heal.
#[test]
fn leave_during_partition_is_seen_everywhere_after_heal() {
    let sc = load("leave-partition");
    for r in run_clean(&sc) {
        for m in &r.members {
            if m.node == 3 {
                assert_eq!(m.state, "Left");
            } else {
                assert_eq!(m.state, "Joined");
                assert_eq!(m.members, vec![0, 1, 2, 4], "{}", r.to_text());
                assert_eq!(m.outbox, 0);
            }
        }
        let m = r.message("who is still here?").unwrap();
        assert_eq!(m.expected, vec![1, 2, 4]);
        assert_eq!(m.delivered, 3);
    }
}

/// (f) A member restarted with a queued outbox still delivers after the restart.
#[test]
fn restarted_member_delivers_its_stored_outbox() {
    let sc = load("restart-outbox");
    for &seed in &sc.seeds {
        let opts = Options {
            record_wire: true,
            ..Options::default()
        };
        let mut sim = Sim::new(&sc, seed, opts).unwrap();
        sim.run_until(59.0);
        // Before the crash the direct copy for n4 waits in n0's outbox.
        assert!(sim.node(0).unwrap().outbox_len() >= 1);
        let stored = sim.store(0).unwrap().outbox.len();
        assert!(stored >= 1);
        sim.run_until(f64::INFINITY);
        let wire = sim.wire().to_vec();
        let r = sim.report();
        assert!(r.violations.is_empty(), "{}", r.to_text());
        let m = r.message("for n4, eventually").unwrap();
        let d = m.displays.iter().find(|d| d.node == 4).unwrap();
        assert!(matches!(d.last, Trust::Direct { .. }), "{}", r.to_text());
        // The copy n4 got came from n0's second incarnation (rebuilt from its records).
        let sent: Vec<_> = wire
            .iter()
            .filter(|w| w.from == 0 && w.to == Some(4))
            .filter(|w| w.text().starts_with("groupchat_message "))
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].incarnation, 1);
        assert!(sent[0].at >= 120_000);
        assert_eq!(r.members[0].outbox, 0);
    }
}

/// (g) Mode `noredundancy`: no echoes on the wire; an unreachable member misses the message.
#[test]
fn noredundancy_sends_no_echoes() {
    let sc = load("noredundancy");
    for &seed in &sc.seeds {
        let opts = Options {
            record_wire: true,
            ..Options::default()
        };
        let mut sim = Sim::new(&sc, seed, opts).unwrap();
        sim.run_until(f64::INFINITY);
        assert!(sim
            .wire()
            .iter()
            .all(|w| !w.text().starts_with("groupchat_echoed_message")));
        let r = sim.report();
        assert!(r.violations.is_empty(), "{}", r.to_text());
        assert_eq!(r.totals.echo_lines, 0);
        let m = r.message("plain").unwrap();
        assert_eq!(m.missing, vec![5]);
        assert!(m
            .displays
            .iter()
            .all(|d| matches!(d.last, Trust::Direct { .. })));
        assert_eq!(r.message("plain too").unwrap().delivered, 5);
    }
}

/// The real invite flow builds the group; everyone agrees and hears everyone.
#[test]
fn invite_flow_builds_the_group() {
    let sc = load("invite-flow");
    for r in run_clean(&sc) {
        for m in &r.members {
            assert_eq!(m.state, "Joined", "{}", r.to_text());
            assert_eq!(m.members, vec![0, 1, 2, 3, 4]);
        }
        assert_eq!(r.totals.delivery_ratio, 1.0);
    }
}

/// Flaps, a partition, a crash, a forger: the invariants hold and everything arrives.
#[test]
fn chaos_keeps_the_invariants() {
    let sc = load("chaos");
    for r in run_clean(&sc) {
        assert_eq!(r.totals.delivery_ratio, 1.0, "{}", r.to_text());
        // Repeated text after the heal: two messages, each shown once per member.
        assert_eq!(r.messages_with("after the heal").len(), 2);
    }
}

/// The same scenario and seed give byte-identical JSON; another seed does not.
#[test]
fn runs_are_deterministic() {
    let sc = load("chaos");
    let a = torchat_sim::run(&sc, 7).unwrap().to_json();
    let b = torchat_sim::run(&sc, 7).unwrap().to_json();
    assert_eq!(a, b);
    let c = torchat_sim::run(&sc, 8).unwrap().to_json();
    assert_ne!(a, c);
}

/// The checker itself: a leave that can never reach the other side of a partition that
/// never heals must be reported as disagreeing member lists.
#[test]
fn disagreement_is_reported() {
    let mut sc = load("leave-partition");
    sc.partition[0].heal = None;
    sc.say.clear();
    let r = torchat_sim::run(&sc, 1).unwrap();
    assert_eq!(r.violations.len(), 1, "{}", r.to_text());
    assert!(r.violations[0].starts_with("member lists disagree"));
}

/// Every scenario file parses and validates.
#[test]
fn all_scenario_files_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            Scenario::load(&p).unwrap();
            n += 1;
        }
    }
    assert!(n >= 9);
}

/// KNOWN CORE BUG, see `scenarios/leave-race.toml`: a `groupchat_leave` is lost when the
/// leaver's connections close before the peer reads it, and nothing repairs it afterwards.
#[test]
fn leave_is_not_lost_to_a_close_race() {
    run_clean(&load("leave-race"));
}

/// Random scenarios (see `torchat-sim explore`) without members leaving keep every invariant.
#[test]
fn random_scenarios_keep_the_invariants() {
    let cfg = torchat_sim::explore::ExploreConfig {
        leaves: false,
        ..Default::default()
    };
    for seed in 1..=25 {
        let sc = torchat_sim::explore::scenario(seed, &cfg);
        let r = torchat_sim::run(&sc, seed).unwrap();
        assert!(r.violations.is_empty(), "seed {seed}:\n{}", r.to_text());
    }
}

/// KNOWN CORE BUG: with members leaving, random scenarios end with diverging member lists
/// (`torchat-sim explore` finds them; seed 282 even without jitter: a leave written to a
/// member that had just crashed is lost, and the restarted member keeps the leaver for ever).
#[test]
fn random_scenarios_with_leaves_keep_the_invariants() {
    let cfg = torchat_sim::explore::ExploreConfig::default();
    for seed in 1..=300 {
        let sc = torchat_sim::explore::scenario(seed, &cfg);
        let r = torchat_sim::run(&sc, seed).unwrap();
        assert!(r.violations.is_empty(), "seed {seed}:\n{}", r.to_text());
    }
}

/// KNOWN CORE BUG, see `scenarios/invite-concurrent.toml`: two invitations at once leave
/// diverging member lists for ever (the first joiner never learns of the second).
#[test]
fn concurrent_invites_agree() {
    run_clean(&load("invite-concurrent"));
}

/// A mixed group: seed-only members among torchat_sync members. Every message reaches every
/// member; seed-only members get the seed's packets (never a sync packet).
#[test]
fn mixed_group_delivers_everything_and_keeps_the_invariants() {
    let sc = load("mixed");
    for seed in &sc.seeds {
        let sim = Sim::new(
            &sc,
            *seed,
            Options {
                record_wire: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut sim = sim;
        sim.run_until(f64::INFINITY);
        for w in sim.wire() {
            if w.to.is_some_and(|t| t >= 6) {
                assert!(!w.text().starts_with("groupchat_sync_"), "{}", w.text());
            }
        }
        let r = sim.report();
        assert!(r.violations.is_empty(), "{}", r.to_text());
        for m in &r.messages {
            assert_eq!(m.delivered, m.expected.len(), "{}", r.to_text());
        }
    }
}

/// torchat_sync under churn: away for hours, a healed partition, a speaker dying after
/// reaching one member: every message reaches every member running at the end.
#[test]
fn sync_churn_delivers_everything() {
    let sc = load("sync-churn");
    for r in run_clean(&sc) {
        for m in &r.messages {
            let missing: Vec<usize> = m
                .missing
                .iter()
                .copied()
                .filter(|x| r.members[*x].alive)
                .collect();
            assert!(missing.is_empty(), "{}", r.to_text());
        }
        // The member that came back after two hours got what was said while it was away.
        let away = r.message("while n7 is away").unwrap();
        assert!(away.displays.iter().any(|d| d.node == 7), "{}", r.to_text());
        // Those n5 could not reach got its last words from the one it reached.
        let last = r.message("last words of n5").unwrap();
        assert!(last.displays.iter().any(|d| d.node == 3), "{}", r.to_text());
    }
}

/// Churn (issue "links that come back"): three members crash and restart 24 times in all
/// while six members talk; whoever runs with a working link is back online with the others
/// within 10 s of both being up (checked every half second), and every message reaches every
/// member that is running when it is said.
#[test]
fn churn_reconnects_within_seconds_and_delivers_everything() {
    let sc = load("churn");
    for r in run_clean(&sc) {
        let rc = r.reconnect.clone().unwrap();
        assert!(rc.episodes >= 100, "{rc:?}");
        assert!(rc.p95 <= 6.0, "{rc:?}");
        assert!(
            r.totals.pairs_displayed == r.totals.pairs_expected,
            "{}",
            r.to_text()
        );
    }
}
