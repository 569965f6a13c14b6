//! The sweep of the extension `torchat_sync`: what a message costs against group size, with
//! and without the extension, and whether every message reaches every member under churn.
//!
//! **Cost.** Steady state, defined as: every pair link up, every member online and meshed
//! (the group is bootstrapped, members start within 10 s, speaking starts at 240 s), ids are
//! v3 ids with keys (messages are signed, as on the Tor network), texts of 100 bytes, and 100
//! messages from 5 speakers (3 at n ≥ 50) in 600 s, in one of two regimes:
//! - `isolated`: one message every 6 s, each from the next speaker;
//! - `burst`: every 30 s a speaker says 5 messages 0.2 s apart.
//!
//! Counted from the first message to 60 s after the last: full copies (every line that
//! carries a message's text: the speaker's, echoes, relayed or pulled sync copies) and their
//! bytes (the payload), and the extension's control lines (acks, digests, wants, ends,
//! tells) and their bytes. "Without sync" is today's torchat node (seed redundancy with
//! signed messages and echoes).
//!
//! **Churn.** Ten members, scenarios where the seed's outbox relaying is at its limits: members
//! offline for hours (and for longer than the 24 h outbox lifetime), a partition that heals
//! after 30 minutes, the speaker dying right after reaching one member, a member killed in the
//! middle of a burst (the lines in flight are lost), and links that stay down. Delivered =
//! (member, message) pairs shown at the end over pairs expected; the curve of that fraction over
//! time is plotted.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::Report;
use crate::scenario::{
    CoreOverrides, Crash, Down, GroupSetup, Mode, Network, Partition, Say, Scenario,
};
use crate::sim::{Options, Sim};

/// Text length of steady-state messages.
pub const TEXT_LEN: usize = 100;

/// What to run.
#[derive(Debug, Clone)]
pub struct SyncSweepConfig {
    /// Group sizes of the cost sweep.
    pub sizes: Vec<usize>,
    /// Seeds of the churn scenarios.
    pub seeds: Vec<u64>,
    /// Worker threads.
    pub threads: usize,
    /// Run the churn scenarios.
    pub churn: bool,
}

impl Default for SyncSweepConfig {
    fn default() -> Self {
        SyncSweepConfig {
            sizes: vec![3, 5, 10, 20, 30, 50, 100],
            seeds: vec![1, 2, 3],
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            churn: true,
        }
    }
}

/// One cost measurement.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CostPoint {
    /// Group size.
    pub n: usize,
    /// `true`: members speak `torchat_sync`.
    pub sync: bool,
    /// `isolated` or `burst`.
    pub regime: &'static str,
    /// Messages said.
    pub messages: usize,
    /// Full copies written per message.
    pub copies: f64,
    /// Bytes of full copies per message.
    pub payload: f64,
    /// Bytes of the extension's control lines per message.
    pub control: f64,
    /// Control lines per message.
    pub control_lines: f64,
    /// Delivery ratio.
    pub delivery: f64,
    /// Invariant violations.
    pub violations: usize,
}

/// One churn scenario in one mode, over seeds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChurnPoint {
    /// Scenario name.
    pub name: String,
    /// `true`: members speak `torchat_sync`.
    pub sync: bool,
    /// (member, message) pairs expected, over seeds.
    pub expected: usize,
    /// Of those, shown at the end.
    pub delivered: usize,
    /// Longest time from a message being said to an expected member showing it, seconds
    /// (over the delivered pairs).
    pub slowest: f64,
    /// Fraction delivered against seconds since the start, at sample times.
    pub curve: Vec<(f64, f64)>,
    /// Invariant violations, over seeds.
    pub violations: usize,
    /// The first few, for diagnosis.
    pub sample_violations: Vec<String>,
}

/// Everything measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncSweepResult {
    /// Cost points.
    pub cost: Vec<CostPoint>,
    /// Churn points.
    pub churn: Vec<ChurnPoint>,
}

fn base(name: &str, n: usize, duration: f64, sync: bool) -> Scenario {
    Scenario {
        name: name.to_owned(),
        description: String::new(),
        nodes: n,
        seeds: vec![1],
        duration,
        network: Network {
            start_spread: 10.0,
            signed: true,
            ..Network::default()
        },
        core: CoreOverrides {
            sync: Some(sync),
            ..Default::default()
        },
        group: GroupSetup {
            mode: Mode::Redundancy,
            ..Default::default()
        },
        down: Vec::new(),
        flap: Vec::new(),
        partition: Vec::new(),
        crash: Vec::new(),
        forge: Vec::new(),
        invite: Vec::new(),
        leave: Vec::new(),
        say: Vec::new(),
        check: Default::default(),
    }
}

fn text(k: usize, s: usize) -> String {
    let mut t = format!("message {k} from n{s} ");
    while t.len() < TEXT_LEN {
        t.push('.');
    }
    t.truncate(TEXT_LEN);
    t
}

/// When steady-state speaking starts (a 100-member group needs about three minutes to mesh).
pub const STEADY_FROM: f64 = 240.0;

/// The steady-state scenario.
pub fn cost_scenario(n: usize, sync: bool, regime: &str) -> Scenario {
    let speakers: Vec<usize> = {
        let k = if n >= 50 { 3 } else { 5.min(n) };
        (0..k).map(|i| i * n / k).collect()
    };
    let mut say = Vec::new();
    for k in 0..100 {
        let (at, node) = match regime {
            "burst" => (
                STEADY_FROM + (k / 5) as f64 * 30.0 + (k % 5) as f64 * 0.2,
                speakers[(k / 5) % speakers.len()],
            ),
            _ => (STEADY_FROM + k as f64 * 6.0, speakers[k % speakers.len()]),
        };
        say.push(Say {
            at,
            node,
            text: text(k, node),
        });
    }
    let end = say.last().map_or(STEADY_FROM, |s| s.at) + 60.0;
    let mut sc = base(&format!("cost n={n} {regime}"), n, end, sync);
    sc.say = say;
    sc
}

fn run_cost(n: usize, sync: bool, regime: &'static str) -> CostPoint {
    let sc = cost_scenario(n, sync, regime);
    let opts = Options {
        count_from_ms: (STEADY_FROM * 1000.0) as u64,
        ..Options::default()
    };
    let report = match Sim::new(&sc, 1, opts) {
        Ok(sim) => sim.run(),
        Err(_) => {
            return CostPoint {
                n,
                sync,
                regime,
                messages: 0,
                copies: 0.0,
                payload: 0.0,
                control: 0.0,
                control_lines: 0.0,
                delivery: 0.0,
                violations: 1,
            }
        }
    };
    let t = &report.totals;
    let m = report.messages.len().max(1) as f64;
    CostPoint {
        n,
        sync,
        regime,
        messages: report.messages.len(),
        copies: (t.message_lines + t.echo_lines) as f64 / m,
        payload: t.group_bytes as f64 / m,
        control: t.digest_bytes as f64 / m,
        control_lines: t.digest_lines as f64 / m,
        delivery: t.delivery_ratio,
        violations: report.violations.len(),
    }
}

/// The churn scenarios (ten members each).
pub fn churn_scenarios(sync: bool) -> Vec<Scenario> {
    let n = 10;
    let says = |from: f64, every: f64, count: usize, speakers: &[usize], tag: &str| {
        (0..count)
            .map(|k| {
                let node = speakers[k % speakers.len()];
                Say {
                    at: from + every * k as f64,
                    node,
                    text: format!("{tag} {k} from n{node}"),
                }
            })
            .collect::<Vec<Say>>()
    };
    let mut out = Vec::new();
    // Three members offline for 3 hours while 20 messages are said.
    for (name, hours) in [
        ("offline 3 h", 3.0),
        ("offline 26 h (> 24 h outbox lifetime)", 26.0),
    ] {
        let back = 300.0 + hours * 3600.0;
        let mut sc = base(name, n, back + 900.0, sync);
        sc.crash = [7, 8, 9]
            .iter()
            .map(|&node| Crash {
                node,
                at: 300.0,
                restart: Some(back),
            })
            .collect();
        sc.say = says(400.0, 60.0, 20, &[0, 1, 2, 3, 4], "away");
        out.push(sc);
    }
    // A partition for 30 minutes, both sides talking.
    let mut sc = base("partition healed after 30 min", n, 3000.0, sync);
    sc.partition = vec![Partition {
        at: 300.0,
        heal: Some(2100.0),
        sides: vec![(0..5).collect(), (5..10).collect()],
    }];
    sc.say = says(400.0, 60.0, 20, &[0, 5, 1, 6], "split");
    out.push(sc);
    // The speaker reaches one member and dies.
    let mut sc = base("speaker dies after reaching one member", n, 1500.0, sync);
    sc.down = vec![Down {
        pairs: (2..n).map(|j| [0, j]).collect(),
        from: 299.0,
        until: None,
    }];
    sc.say = vec![Say {
        at: 300.0,
        node: 0,
        text: "last words".into(),
    }];
    sc.say.extend(says(320.0, 30.0, 5, &[1, 2, 3], "after"));
    sc.crash = vec![Crash {
        node: 0,
        at: 301.0,
        restart: None,
    }];
    out.push(sc);
    // A member killed in the middle of a burst (lines in flight to it are lost).
    let mut sc = base("member killed mid-burst", n, 1200.0, sync);
    sc.say = says(300.0, 0.05, 40, &[0], "burst");
    sc.crash = vec![Crash {
        node: 9,
        at: 300.9,
        restart: Some(360.0),
    }];
    out.push(sc);
    // 30 % of the links down for the whole run.
    let mut sc = base("30 % of links down for good", n, 1500.0, sync);
    let mut pairs = Vec::new();
    let mut x: u64 = 0x9e37_79b9;
    for a in 0..n {
        for b in a + 1..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 10 < 3 {
                pairs.push([a, b]);
            }
        }
    }
    sc.down = vec![Down {
        pairs,
        from: 0.0,
        until: None,
    }];
    sc.say = says(300.0, 30.0, 20, &[0, 1, 2, 3, 4], "lossy");
    out.push(sc);
    out
}

/// Fraction of pairs (with members running at the end) delivered by each sample time.
fn curve(reports: &[Report], duration: f64) -> Vec<(f64, f64)> {
    let mut times: Vec<f64> = Vec::new();
    let mut expected = 0usize;
    for r in reports {
        let alive = |x: usize| r.members.get(x).is_some_and(|m| m.alive);
        for m in &r.messages {
            if m.forged_by.is_some() {
                continue;
            }
            expected += m.expected.iter().filter(|x| alive(**x)).count();
            for d in &m.displays {
                if m.expected.contains(&d.node) && alive(d.node) {
                    times.push(d.shown_at);
                }
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let steps = 200;
    (0..=steps)
        .map(|k| {
            let t = duration * f64::from(k) / f64::from(steps);
            let done = times.partition_point(|x| *x <= t);
            (t, done as f64 / expected.max(1) as f64)
        })
        .collect()
}

fn run_churn(sc: &Scenario, sync: bool, seeds: &[u64]) -> ChurnPoint {
    let reports: Vec<Report> = seeds
        .iter()
        .filter_map(|&s| crate::run(sc, s).ok())
        .collect();
    let mut expected = 0;
    let mut delivered = 0;
    let mut slowest: f64 = 0.0;
    let mut violations = 0;
    let mut samples = Vec::new();
    for (r, seed) in reports.iter().zip(seeds) {
        // Members running at the end (a speaker that died for good is not waited for).
        let alive = |x: usize| r.members.get(x).is_some_and(|m| m.alive);
        for m in r.messages.iter().filter(|m| m.forged_by.is_none()) {
            for &x in m.expected.iter().filter(|x| alive(**x)) {
                expected += 1;
                if let Some(d) = m.displays.iter().find(|d| d.node == x) {
                    delivered += 1;
                    slowest = slowest.max(d.shown_at - m.at);
                }
            }
        }
        violations += r.violations.len();
        for v in r.violations.iter().take(1) {
            samples.push(format!("{} seed {seed}: {v}", sc.name));
        }
    }
    ChurnPoint {
        name: sc.name.clone(),
        sync,
        expected,
        delivered,
        slowest,
        curve: curve(&reports, sc.duration),
        violations,
        sample_violations: samples,
    }
}

/// Runs the sweep; `progress` gets a line per finished run.
pub fn run(cfg: &SyncSweepConfig, progress: &(dyn Fn(&str) + Sync)) -> SyncSweepResult {
    let mut jobs: Vec<(usize, bool, &'static str)> = Vec::new();
    for &n in &cfg.sizes {
        for sync in [false, true] {
            for regime in ["isolated", "burst"] {
                jobs.push((n, sync, regime));
            }
        }
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.0));
    let mut cost = crate::sweep::parallel(&jobs, cfg.threads, |&(n, sync, regime)| {
        let started = std::time::Instant::now();
        let p = run_cost(n, sync, regime);
        progress(&format!(
            "cost n={n:<3} {:<7} {regime:<8}: {:.1} copies, {:.0} + {:.0} bytes/msg ({:.1} s)",
            if sync { "sync" } else { "no sync" },
            p.copies,
            p.payload,
            p.control,
            started.elapsed().as_secs_f64()
        ));
        p
    });
    cost.sort_by(|a, b| (a.n, a.sync, a.regime).cmp(&(b.n, b.sync, b.regime)));
    let mut churn = Vec::new();
    if cfg.churn {
        let mut cjobs = Vec::new();
        for sync in [false, true] {
            for sc in churn_scenarios(sync) {
                cjobs.push((sc, sync));
            }
        }
        churn = crate::sweep::parallel(&cjobs, cfg.threads, |(sc, sync)| {
            let started = std::time::Instant::now();
            let p = run_churn(sc, *sync, &cfg.seeds);
            progress(&format!(
                "churn {:<40} {:<7}: {}/{} ({:.1} s)",
                sc.name,
                if *sync { "sync" } else { "no sync" },
                p.delivered,
                p.expected,
                started.elapsed().as_secs_f64()
            ));
            p
        });
    }
    SyncSweepResult { cost, churn }
}

/// The markdown report.
pub fn markdown(r: &SyncSweepResult, cfg: &SyncSweepConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Steady state (every link up, members meshed, v3 ids, signed messages, {TEXT_LEN}-byte texts, 100 messages in 600 s from 5 speakers, 3 at n ≥ 50), counted from the first message to 60 s after the last. Per message: full copies, their bytes (payload), the extension's control bytes and lines (acks, digests, wants, ends, tells), overhead = control / payload.\n"
    );
    let _ = writeln!(
        s,
        "| n | regime | copies, no sync | copies, sync | (n−1) | payload bytes, no sync | payload bytes, sync | control bytes, sync | control lines, sync | overhead | delivery, sync |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &cfg.sizes {
        for regime in ["isolated", "burst"] {
            let get = |sync: bool| {
                r.cost
                    .iter()
                    .find(|p| p.n == n && p.sync == sync && p.regime == regime)
            };
            let (Some(a), Some(b)) = (get(false), get(true)) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {n} | {regime} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} % | {:.3} |",
                a.copies,
                b.copies,
                n - 1,
                a.payload,
                b.payload,
                b.control,
                b.control_lines,
                100.0 * b.control / b.payload.max(1.0),
                b.delivery
            );
        }
    }
    let v: usize = r.cost.iter().map(|p| p.violations).sum();
    let _ = writeln!(s, "\nInvariant violations in the cost runs: {v}.");
    if !r.churn.is_empty() {
        let _ = writeln!(
            s,
            "\nChurn (10 members, seeds {:?}): (member, message) pairs shown at the end / expected (members running at the end), and the slowest delivery. Violations are the simulator's invariants (for the seed, its own: a member connected to the speaker that never got the message).\n",
            cfg.seeds
        );
        let _ = writeln!(
            s,
            "| scenario | no sync | no sync, slowest | sync | sync, slowest | violations (no sync / sync) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        let names: Vec<String> = r
            .churn
            .iter()
            .filter(|c| !c.sync)
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            let get = |sync: bool| r.churn.iter().find(|c| c.name == name && c.sync == sync);
            let (Some(a), Some(b)) = (get(false), get(true)) else {
                continue;
            };
            let ratio = |c: &ChurnPoint| {
                format!(
                    "{}/{} = {:.3}",
                    c.delivered,
                    c.expected,
                    c.delivered as f64 / c.expected.max(1) as f64
                )
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} / {} |",
                ratio(a),
                human(a.slowest),
                ratio(b),
                human(b.slowest),
                a.violations,
                b.violations
            );
        }
        for c in &r.churn {
            for v in &c.sample_violations {
                let _ = writeln!(s, "- {v}");
            }
        }
    }
    s
}

fn human(secs: f64) -> String {
    if secs >= 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else if secs >= 120.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.1} s")
    }
}

/// CSV of the cost points.
pub fn cost_csv(points: &[CostPoint]) -> String {
    let mut s = String::from(
        "n,sync,regime,messages,copies_per_message,payload_bytes_per_message,control_bytes_per_message,control_lines_per_message,overhead,delivery,violations\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.2},{:.0},{:.0},{:.2},{:.4},{:.4},{}",
            p.n,
            p.sync,
            p.regime,
            p.messages,
            p.copies,
            p.payload,
            p.control,
            p.control_lines,
            p.control / p.payload.max(1.0),
            p.delivery,
            p.violations
        );
    }
    s
}

/// Writes `sync.md`, `sync-cost.csv`, `sync-copies.svg`, `sync-bytes.svg`,
/// `sync-overhead.svg` and (with churn) `sync-churn.svg` into `dir`.
pub fn write(r: &SyncSweepResult, cfg: &SyncSweepConfig, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let put = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    put("sync.md", markdown(r, cfg))?;
    put("sync-cost.csv", cost_csv(&r.cost))?;
    crate::plot::sync_copies(&r.cost, &dir.join("sync-copies.svg"))?;
    crate::plot::sync_bytes(&r.cost, &dir.join("sync-bytes.svg"))?;
    crate::plot::sync_overhead(&r.cost, &dir.join("sync-overhead.svg"))?;
    if !r.churn.is_empty() {
        crate::plot::sync_churn(&r.churn, &dir.join("sync-churn.svg"))?;
    }
    Ok(())
}
