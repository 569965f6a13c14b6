//! Random scenarios for exploration: flapping links, partitions, crashes, forgers, leaves and
//! speakers at random times. Every fault ends well before the end of the run (after the
//! longest reconnect backoff), so the end-of-run invariants apply.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::scenario::{Crash, Flap, Forge, Leave, Network, Partition, Say, Scenario};

/// What random scenarios may contain.
#[derive(Debug, Clone)]
pub struct ExploreConfig {
    /// Include members leaving the group.
    pub leaves: bool,
    /// Include crashes and restarts.
    pub crashes: bool,
    /// Largest group.
    pub max_nodes: usize,
    /// Random jitter (off: every transmission takes exactly the link latency).
    pub jitter: bool,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig {
            leaves: true,
            crashes: true,
            max_nodes: 8,
            jitter: true,
        }
    }
}

struct R(ChaCha20Rng);

impl R {
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.next_u64() % n
        }
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        let x = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((lo + (hi - lo) * x) * 10.0).round() / 10.0
    }
    fn chance(&mut self, p: f64) -> bool {
        self.range(0.0, 1.0) < p
    }
    fn node(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    fn pair(&mut self, n: usize) -> [usize; 2] {
        let a = self.node(n);
        let mut b = self.node(n - 1);
        if b >= a {
            b += 1;
        }
        [a, b]
    }
}

/// The random scenario for `seed`.
pub fn scenario(seed: u64, cfg: &ExploreConfig) -> Scenario {
    let mut r = R(ChaCha20Rng::seed_from_u64(seed ^ 0x5eed_0fe4_b10e));
    let n = 3 + r.node(cfg.max_nodes.max(4) - 2);
    let mut flap = Vec::new();
    for _ in 0..r.below(4) {
        let period = r.range(30.0, 120.0);
        flap.push(Flap {
            pairs: vec![r.pair(n)],
            period,
            down_for: r.range(5.0, period - 5.0),
            start: r.range(0.0, 100.0),
            until: Some(r.range(300.0, 600.0)),
        });
    }
    let mut partition = Vec::new();
    if r.chance(0.5) {
        let at = r.range(50.0, 300.0);
        let mut sides = vec![Vec::new(), Vec::new()];
        for i in 0..n {
            sides[r.node(2)].push(i);
        }
        partition.push(Partition {
            at,
            heal: Some(at + r.range(20.0, 200.0)),
            sides,
        });
    }
    let mut crash = Vec::new();
    if cfg.crashes && r.chance(0.5) {
        let at = r.range(50.0, 500.0);
        crash.push(Crash {
            node: r.node(n),
            at,
            restart: Some(at + r.range(10.0, 200.0)),
        });
    }
    let mut forge = Vec::new();
    if r.chance(0.3) {
        let [by, speaker] = r.pair(n);
        forge.push(Forge {
            at: r.range(100.0, 600.0),
            by,
            speaker,
            text: format!("forged by n{by}"),
            to: None,
        });
    }
    let mut leave = Vec::new();
    if cfg.leaves && r.chance(0.3) {
        leave.push(Leave {
            at: r.range(100.0, 600.0),
            node: r.node(n),
        });
    }
    let mut say: Vec<Say> = Vec::new();
    for k in 0..3 + r.below(8) {
        let node = r.node(n);
        let repeat = say
            .iter()
            .filter(|s| s.node == node)
            .map(|s| s.text.clone())
            .next();
        let text = match repeat {
            Some(t) if r.chance(0.3) => t,
            _ => format!("m{k} from n{node}"),
        };
        say.push(Say {
            at: r.range(20.0, 700.0),
            node,
            text,
        });
    }
    say.sort_by(|a, b| a.at.total_cmp(&b.at));
    let (latency, jitter) = (r.range(0.2, 1.0), r.range(0.0, 1.0));
    // Mostly torchat_sync members; sometimes a mixed group with seed-only members.
    let mut core = crate::scenario::CoreOverrides::default();
    if r.chance(0.3) {
        core.seed_only = (0..n).filter(|_| r.chance(0.4)).collect();
    }
    Scenario {
        name: format!("explore-{seed}"),
        description: "random faults".into(),
        nodes: n,
        seeds: vec![seed],
        duration: 1800.0,
        network: Network {
            latency,
            jitter: if cfg.jitter { jitter } else { 0.0 },
            connect_fail: r.range(0.5, 5.0),
            start_spread: r.range(0.0, 10.0),
            link: Vec::new(),
            signed: false,
        },
        core,
        group: Default::default(),
        down: Vec::new(),
        flap,
        partition,
        crash,
        forge,
        invite: Vec::new(),
        leave,
        say,
        check: Default::default(),
    }
}
