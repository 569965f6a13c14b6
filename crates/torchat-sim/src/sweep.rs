//! The comparison sweep: plain group chat (`noredundancy`) against the redundancy extension
//! as the seed specifies it (members without `torchat_sync`), over group sizes and
//! link-failure probabilities, and wire cost against the (n−1)² bound.
//!
//! In every run each pair link is independently down for the whole run with probability p
//! (the same draw for both modes, so the comparison is paired), the group is bootstrapped
//! (every node a member, restored as after a restart), nodes start within the first 10 s
//! and connect, and from 240 s on several speakers say two messages each; the run ends 40 s
//! after the last one. Delivery ratio = (member,
//! message) pairs shown / pairs expected.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::scenario::{Down, Mode, Network, Say, Scenario};
use crate::sim::{Options, Sim};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Group sizes for the delivery comparison.
    pub sizes: Vec<usize>,
    /// Link-failure probabilities.
    pub probs: Vec<f64>,
    /// Seeds per point (the mean is reported).
    pub seeds: Vec<u64>,
    /// Group sizes for the transmissions plot.
    pub tx_sizes: Vec<usize>,
    /// Failure probabilities for the transmissions plot.
    pub tx_probs: Vec<f64>,
    /// Worker threads.
    pub threads: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            sizes: vec![10, 30, 100],
            probs: (0..=6).map(|k| f64::from(k) / 10.0).collect(),
            seeds: vec![1, 2, 3, 4, 5],
            tx_sizes: vec![3, 5, 10, 20, 30, 50, 100],
            tx_probs: vec![0.0, 0.3],
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// One point of the sweep: the mean over seeds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Point {
    /// Group size.
    pub n: usize,
    /// Link-failure probability.
    pub p: f64,
    /// Group mode.
    pub mode: Mode,
    /// Seeds run.
    pub runs: usize,
    /// Messages said per run.
    pub messages: usize,
    /// Mean delivery ratio.
    pub delivery: f64,
    /// Lowest delivery ratio of a run.
    pub delivery_min: f64,
    /// Mean group lines (`groupchat_message` + `groupchat_echoed_message`) per message.
    pub lines_per_message: f64,
    /// Mean bytes of those lines per message.
    pub bytes_per_message: f64,
    /// Mean of the per-message time to last delivery, seconds.
    pub time_to_last: f64,
    /// Invariant violations over all runs.
    pub violations: usize,
}

/// Everything the sweep measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SweepResult {
    /// Delivery ratio points.
    pub delivery: Vec<Point>,
    /// Transmission points.
    pub transmissions: Vec<Point>,
    /// The first violations seen (for diagnosis).
    pub sample_violations: Vec<String>,
}

/// The scenario of one sweep run.
pub fn scenario(n: usize, p: f64, mode: Mode, seed: u64) -> Scenario {
    // Link failures and speakers depend on (n, p, seed) only, not on the mode.
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((n as u64) << 20)
        .wrapping_add((p * 1000.0).round() as u64);
    let mut rng = ChaCha20Rng::seed_from_u64(mix);
    let threshold = (p * f64::from(u32::MAX)).round() as u64;
    let mut pairs = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            if u64::from(rng.next_u32()) < threshold {
                pairs.push([a, b]);
            }
        }
    }
    let speakers = if n >= 100 { 3 } else { 5.min(n) };
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < speakers {
        let s = (rng.next_u64() % n as u64) as usize;
        if !chosen.contains(&s) {
            chosen.push(s);
        }
    }
    let mut say = Vec::new();
    // A 100-node group started within 10 s needs about three minutes to mesh completely
    // (the core's cap of 64 unauthenticated incoming connections refuses part of the first
    // burst, and refused dialers back off), so speaking starts at 240 s.
    let mut t = 240.0;
    for round in 0..2 {
        for &s in &chosen {
            say.push(Say {
                at: t,
                node: s,
                text: format!("message {round} from n{s}"),
            });
            t += 2.0;
        }
    }
    Scenario {
        name: format!("sweep n={n} p={p:.1} {}", mode.name()),
        description: String::new(),
        nodes: n,
        seeds: vec![seed],
        duration: t + 40.0,
        network: Network {
            start_spread: 10.0,
            ..Network::default()
        },
        // Today's comparison: members that speak only the seed (torchat_sync is measured by
        // `sync_sweep`).
        core: crate::scenario::CoreOverrides {
            sync: Some(false),
            ..Default::default()
        },
        group: crate::scenario::GroupSetup {
            mode,
            ..Default::default()
        },
        down: if pairs.is_empty() {
            Vec::new()
        } else {
            vec![Down {
                pairs,
                from: 0.0,
                until: None,
            }]
        },
        flap: Vec::new(),
        partition: Vec::new(),
        crash: Vec::new(),
        forge: Vec::new(),
        invite: Vec::new(),
        leave: Vec::new(),
        say,
        check: Default::default(),
    }
}

struct RunOut {
    delivery: f64,
    messages: usize,
    lines: f64,
    bytes: f64,
    ttl: f64,
    violations: Vec<String>,
}

fn run_one(n: usize, p: f64, mode: Mode, seed: u64) -> RunOut {
    let sc = scenario(n, p, mode, seed);
    let report = match Sim::new(&sc, seed, Options::default()) {
        Ok(sim) => sim.run(),
        Err(e) => {
            return RunOut {
                delivery: 0.0,
                messages: 0,
                lines: 0.0,
                bytes: 0.0,
                ttl: 0.0,
                violations: vec![e],
            }
        }
    };
    let msgs = report.messages.len().max(1) as f64;
    let t = &report.totals;
    let ttls: Vec<f64> = report
        .messages
        .iter()
        .filter_map(|m| m.time_to_last_delivery)
        .collect();
    RunOut {
        delivery: t.delivery_ratio,
        messages: report.messages.len(),
        lines: (t.message_lines + t.echo_lines) as f64 / msgs,
        bytes: t.group_bytes as f64 / msgs,
        ttl: if ttls.is_empty() {
            0.0
        } else {
            ttls.iter().sum::<f64>() / ttls.len() as f64
        },
        violations: report
            .violations
            .iter()
            .map(|v| format!("{} seed {seed}: {v}", sc.name))
            .collect(),
    }
}

/// Runs `jobs` on `threads` threads; results in job order (deterministic).
pub(crate) fn parallel<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    f: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(k) else { break };
                let r = f(job);
                if let Ok(mut v) = results.lock() {
                    v[k] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

fn points(
    cfg: &SweepConfig,
    sizes: &[usize],
    probs: &[f64],
    seeds: &[u64],
    progress: &(dyn Fn(&str) + Sync),
    samples: &mut Vec<String>,
) -> Vec<Point> {
    let mut jobs = Vec::new();
    for &n in sizes {
        for &p in probs {
            for mode in [Mode::Noredundancy, Mode::Redundancy] {
                for &seed in seeds {
                    jobs.push((n, p, mode, seed));
                }
            }
        }
    }
    // Biggest first, so the threads finish together.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|k| std::cmp::Reverse(jobs[*k].0));
    let ordered: Vec<(usize, f64, Mode, u64)> = order.iter().map(|k| jobs[*k]).collect();
    let outs = parallel(&ordered, cfg.threads, |&(n, p, mode, seed)| {
        let started = std::time::Instant::now();
        let out = run_one(n, p, mode, seed);
        progress(&format!(
            "n={n:<3} p={p:.1} {:<12} seed {seed}: delivery {:.3}, {:.0} lines/msg ({:.1} s)",
            mode.name(),
            out.delivery,
            out.lines,
            started.elapsed().as_secs_f64()
        ));
        out
    });
    let mut by_job: Vec<Option<RunOut>> = (0..jobs.len()).map(|_| None).collect();
    for (k, out) in order.into_iter().zip(outs) {
        by_job[k] = Some(out);
    }
    let mut result = Vec::new();
    let mut it = jobs.iter().zip(by_job);
    for &n in sizes {
        for &p in probs {
            for mode in [Mode::Noredundancy, Mode::Redundancy] {
                let runs: Vec<RunOut> = it
                    .by_ref()
                    .take(seeds.len())
                    .filter_map(|(_, o)| o)
                    .collect();
                let k = runs.len().max(1) as f64;
                let violations: usize = runs.iter().map(|r| r.violations.len()).sum();
                for r in &runs {
                    for v in &r.violations {
                        if samples.len() < 20 {
                            samples.push(v.clone());
                        }
                    }
                }
                result.push(Point {
                    n,
                    p,
                    mode,
                    runs: runs.len(),
                    messages: runs.first().map_or(0, |r| r.messages),
                    delivery: runs.iter().map(|r| r.delivery).sum::<f64>() / k,
                    delivery_min: runs.iter().map(|r| r.delivery).fold(1.0, f64::min),
                    lines_per_message: runs.iter().map(|r| r.lines).sum::<f64>() / k,
                    bytes_per_message: runs.iter().map(|r| r.bytes).sum::<f64>() / k,
                    time_to_last: runs.iter().map(|r| r.ttl).sum::<f64>() / k,
                    violations,
                });
            }
        }
    }
    result
}

/// Runs the whole sweep. `progress` gets one line per finished run.
pub fn run(cfg: &SweepConfig, progress: &(dyn Fn(&str) + Sync)) -> SweepResult {
    let mut samples = Vec::new();
    let delivery = points(
        cfg,
        &cfg.sizes,
        &cfg.probs,
        &cfg.seeds,
        progress,
        &mut samples,
    );
    let tx_seeds: Vec<u64> = cfg.seeds.iter().copied().take(1).collect();
    let transmissions = points(
        cfg,
        &cfg.tx_sizes,
        &cfg.tx_probs,
        &tx_seeds,
        progress,
        &mut samples,
    );
    SweepResult {
        delivery,
        transmissions,
        sample_violations: samples,
    }
}

/// CSV of points.
pub fn csv(points: &[Point]) -> String {
    let mut s = String::from(
        "n,p,mode,runs,messages,delivery_mean,delivery_min,lines_per_message,bytes_per_message,time_to_last_s,violations\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "{},{:.1},{},{},{},{:.4},{:.4},{:.1},{:.0},{:.2},{}",
            p.n,
            p.p,
            p.mode.name(),
            p.runs,
            p.messages,
            p.delivery,
            p.delivery_min,
            p.lines_per_message,
            p.bytes_per_message,
            p.time_to_last,
            p.violations
        );
    }
    s
}

/// The markdown tables of a sweep.
pub fn markdown(r: &SweepResult, cfg: &SweepConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Delivery ratio (mean over {} seeds; min in parentheses) — plain = `noredundancy`, red. = redundancy extension:\n",
        cfg.seeds.len()
    );
    let _ = write!(s, "| p |");
    for n in &cfg.sizes {
        let _ = write!(s, " n={n} plain | n={n} red. |");
    }
    let _ = write!(s, "\n|---|");
    for _ in &cfg.sizes {
        let _ = write!(s, "---:|---:|");
    }
    s.push('\n');
    for &p in &cfg.probs {
        let _ = write!(s, "| {:.0} % |", p * 100.0);
        for &n in &cfg.sizes {
            for mode in [Mode::Noredundancy, Mode::Redundancy] {
                match r
                    .delivery
                    .iter()
                    .find(|x| x.n == n && x.p == p && x.mode == mode)
                {
                    Some(x) => {
                        let _ = write!(s, " {:.3} ({:.3}) |", x.delivery, x.delivery_min);
                    }
                    None => s.push_str(" – |"),
                }
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\nGroup lines per message (`groupchat_message` + `groupchat_echoed_message` written), one seed:\n"
    );
    let _ = writeln!(
        s,
        "| n | (n−1)² | p | plain lines | red. lines | red. bytes | red. / (n−1)² |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &cfg.tx_sizes {
        for &p in &cfg.tx_probs {
            let get = |mode| {
                r.transmissions
                    .iter()
                    .find(|x| x.n == n && x.p == p && x.mode == mode)
            };
            let (Some(a), Some(b)) = (get(Mode::Noredundancy), get(Mode::Redundancy)) else {
                continue;
            };
            let bound = ((n - 1) * (n - 1)) as f64;
            let _ = writeln!(
                s,
                "| {n} | {bound:.0} | {:.0} % | {:.1} | {:.1} | {:.0} | {:.2} |",
                p * 100.0,
                a.lines_per_message,
                b.lines_per_message,
                b.bytes_per_message,
                b.lines_per_message / bound
            );
        }
    }
    let v: usize = r
        .delivery
        .iter()
        .chain(&r.transmissions)
        .map(|p| p.violations)
        .sum();
    let _ = writeln!(s, "\nInvariant violations over all runs: {v}.");
    for x in &r.sample_violations {
        let _ = writeln!(s, "- {x}");
    }
    s
}

/// Writes `delivery.svg`, `transmissions.svg`, `sweep.csv`, `transmissions.csv` and
/// `sweep.md` into `dir`.
pub fn write(r: &SweepResult, cfg: &SweepConfig, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let put = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    put("sweep.csv", csv(&r.delivery))?;
    put("transmissions.csv", csv(&r.transmissions))?;
    put("sweep.md", markdown(r, cfg))?;
    crate::plot::delivery(&r.delivery, &dir.join("delivery.svg"))?;
    crate::plot::transmissions(&r.transmissions, &dir.join("transmissions.svg"))?;
    Ok(())
}
