//! Scenario files: what to simulate, as TOML (see `docs/simulator.md` for the format).
//!
//! Every time is in seconds of virtual time from the start of the run (floats allowed; the
//! simulator works in milliseconds). Nodes are numbered from 0.

use serde::{Deserialize, Serialize};

/// One scenario: a network of nodes, a group, faults and a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Number of nodes (each runs its own core).
    pub nodes: usize,
    /// Seeds to run (one report each). Everything random derives from the seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Length of the run in seconds.
    pub duration: f64,
    /// Latency, jitter and connection behaviour.
    #[serde(default)]
    pub network: Network,
    /// Core settings that differ from the defaults.
    #[serde(default)]
    pub core: CoreOverrides,
    /// How the group comes to exist.
    #[serde(default)]
    pub group: GroupSetup,
    /// Links that are down for a time (or the whole run).
    #[serde(default)]
    pub down: Vec<Down>,
    /// Links that go down and up periodically.
    #[serde(default)]
    pub flap: Vec<Flap>,
    /// Partitions of the network that heal.
    #[serde(default)]
    pub partition: Vec<Partition>,
    /// Nodes that crash (and maybe restart).
    #[serde(default)]
    pub crash: Vec<Crash>,
    /// Forged echoes written by a dishonest member.
    #[serde(default)]
    pub forge: Vec<Forge>,
    /// Invitations (real invite flow; the invitee accepts automatically if `group.auto_accept`).
    #[serde(default)]
    pub invite: Vec<Invite>,
    /// Members leaving the group.
    #[serde(default)]
    pub leave: Vec<Leave>,
    /// Messages said in the group.
    #[serde(default)]
    pub say: Vec<Say>,
    /// Which end-of-run invariants to check.
    #[serde(default)]
    pub check: Checks,
}

fn default_seeds() -> Vec<u64> {
    vec![1]
}

/// The virtual network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// One-way latency of every link, seconds (a Tor circuit: about half a second).
    pub latency: f64,
    /// Extra delay per transmission, uniform in `[0, jitter]` seconds (order on one
    /// connection is kept, as TCP does).
    pub jitter: f64,
    /// Seconds until a connection attempt over a down link (or to a dead node) is reported
    /// failed.
    pub connect_fail: f64,
    /// Nodes start at a uniformly random time in `[0, start_spread]` seconds.
    pub start_spread: f64,
    /// Per-link latency overrides.
    pub link: Vec<LinkLatency>,
    /// Nodes have v3 ids made from ed25519 keys and sign their group messages (default:
    /// legacy 16-character ids, nothing signed).
    pub signed: bool,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency: 0.5,
            jitter: 0.2,
            connect_fail: 2.0,
            start_spread: 0.0,
            link: Vec::new(),
            signed: false,
        }
    }
}

/// Latency of particular links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkLatency {
    /// Node pairs (either order).
    pub pairs: Vec<[usize; 2]>,
    /// One-way latency, seconds.
    pub latency: f64,
    /// Jitter, seconds (defaults to the network's).
    #[serde(default)]
    pub jitter: Option<f64>,
}

/// Core configuration overrides (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreOverrides {
    /// Settle window of the redundancy extension (core default 10 s).
    pub settle_window: Option<f64>,
    /// Lifetime of outbox entries (core default 24 h).
    pub relay_lifetime: Option<f64>,
    /// First reconnect delay (core default 10 s).
    pub backoff_initial: Option<f64>,
    /// Reconnect delay cap (core default 600 s).
    pub backoff_max: Option<f64>,
    /// Speak the extension `torchat_sync` (core default: yes). `false`: seed-only members.
    pub sync: Option<bool>,
    /// Nodes that do not speak `torchat_sync` (seed-only members in a mixed group).
    pub seed_only: Vec<usize>,
    /// Anti-entropy period of the extension (core default 120 s).
    pub sync_interval: Option<f64>,
    /// Acknowledgement / digest batching delay (core default 0.2 s).
    pub sync_ack_delay: Option<f64>,
}

/// Group modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The redundancy extension (PROTOCOL §4): direct copies, echoes, trust ratios.
    #[default]
    Redundancy,
    /// Plain group chat (invite mode `noredundancy`): direct copies only, as ruby-torchat.
    Noredundancy,
}

impl Mode {
    /// The invite modes for the core.
    pub fn modes(self) -> Vec<String> {
        match self {
            Mode::Redundancy => Vec::new(),
            Mode::Noredundancy => vec![torchat_core::NO_REDUNDANCY.to_owned()],
        }
    }

    /// Its name in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Redundancy => "redundancy",
            Mode::Noredundancy => "noredundancy",
        }
    }
}

/// How the (single) group of the scenario comes to exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSetup {
    /// `true`: the group exists from t = 0 with `members` as members (restored from storage,
    /// as after a restart). `false`: `creator` creates it at its start and `[[invite]]`s
    /// build it with the real invite flow.
    pub bootstrap: bool,
    /// Group mode.
    pub mode: Mode,
    /// Bootstrap members (default: every node).
    pub members: Option<Vec<usize>>,
    /// Creator when not bootstrapped.
    pub creator: usize,
    /// Invitees accept invites automatically.
    pub auto_accept: bool,
    /// Seconds between an invite arriving and its acceptance.
    pub accept_delay: f64,
}

impl Default for GroupSetup {
    fn default() -> Self {
        GroupSetup {
            bootstrap: true,
            mode: Mode::Redundancy,
            members: None,
            creator: 0,
            auto_accept: true,
            accept_delay: 1.0,
        }
    }
}

/// Links down from `from` (default 0) until `until` (default: the end of the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Down {
    /// Node pairs.
    pub pairs: Vec<[usize; 2]>,
    /// Start, seconds.
    #[serde(default)]
    pub from: f64,
    /// Heal time, seconds.
    #[serde(default)]
    pub until: Option<f64>,
}

/// Links that are down for `down_for` seconds at the start of every `period`, from `start`
/// until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flap {
    /// Node pairs.
    pub pairs: Vec<[usize; 2]>,
    /// Period, seconds.
    pub period: f64,
    /// Down time in each period, seconds.
    pub down_for: f64,
    /// First down time, seconds.
    #[serde(default)]
    pub start: f64,
    /// No flapping after this (the link stays up), seconds.
    #[serde(default)]
    pub until: Option<f64>,
}

/// From `at` to `heal`, every link between two different sides is down. Nodes on no side
/// keep all their links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start, seconds.
    pub at: f64,
    /// Heal time, seconds (default: never).
    #[serde(default)]
    pub heal: Option<f64>,
    /// The sides.
    pub sides: Vec<Vec<usize>>,
}

/// A node crashes at `at` (its memory is lost) and restarts from its stored records at
/// `restart`, if given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// The node.
    pub node: usize,
    /// Crash time, seconds.
    pub at: f64,
    /// Restart time, seconds.
    #[serde(default)]
    pub restart: Option<f64>,
}

/// At `at`, node `by` writes `groupchat_echoed_message <gid> <speaker> <text>` on each of its
/// established outgoing connections to members (or only to `to`), claiming that `speaker`
/// said `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forge {
    /// Time, seconds.
    pub at: f64,
    /// The dishonest member.
    pub by: usize,
    /// The member it claims said it.
    pub speaker: usize,
    /// The text.
    pub text: String,
    /// Recipients (default: every member but `by` and `speaker`).
    #[serde(default)]
    pub to: Option<Vec<usize>>,
}

/// `by` invites `target` at `at` (retried every 2 s while `target` is not online).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    /// Time, seconds.
    pub at: f64,
    /// The inviting member.
    pub by: usize,
    /// The invitee.
    pub target: usize,
}

/// `node` leaves the group at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    /// Time, seconds.
    pub at: f64,
    /// The member.
    pub node: usize,
}

/// `node` says `text` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Say {
    /// Time, seconds.
    pub at: f64,
    /// The speaker.
    pub node: usize,
    /// The text.
    pub text: String,
}

/// End-of-run invariants to check (the per-event ones are always checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// Live members agree on the member list at the end.
    pub members_agree: bool,
    /// Every live member connected at the end (for longer than the settle window plus 5 s)
    /// to a member that received a message directly has that message (redundancy mode).
    pub relay_reaches_connected: bool,
    /// With `torchat_sync`: every live member that has been connected to a member holding a
    /// message for longer than the repair bound (3 × the anti-entropy period + 30 s) holds
    /// it.
    pub sync_reaches_connected: bool,
    /// Two members that are both running, with their link up, see each other online within
    /// this many seconds (checked every half second). Unset: not checked.
    pub reconnect_within: Option<f64>,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            members_agree: true,
            relay_reaches_connected: true,
            sync_reaches_connected: true,
            reconnect_within: None,
        }
    }
}

impl Scenario {
    /// Parses a scenario from TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The bootstrap members (every node unless listed).
    pub fn members(&self) -> Vec<usize> {
        self.group
            .members
            .clone()
            .unwrap_or_else(|| (0..self.nodes).collect())
    }

    /// Checks node numbers and times.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.nodes;
        if n == 0 || n > 4096 {
            return Err(format!("nodes must be 1..=4096, not {n}"));
        }
        if !(self.duration > 0.0 && self.duration <= 30.0 * 86400.0) {
            return Err("duration must be in (0, 30 days]".into());
        }
        if self.seeds.is_empty() {
            return Err("seeds must not be empty".into());
        }
        let node = |i: usize, what: &str| -> Result<(), String> {
            if i < n {
                Ok(())
            } else {
                Err(format!("{what}: node {i} out of range (nodes = {n})"))
            }
        };
        let time = |t: f64, what: &str| -> Result<(), String> {
            if t.is_finite() && t >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what}: bad time {t}"))
            }
        };
        let pairs = |ps: &[[usize; 2]], what: &str| -> Result<(), String> {
            for [a, b] in ps {
                node(*a, what)?;
                node(*b, what)?;
                if a == b {
                    return Err(format!("{what}: pair [{a}, {b}] is not a link"));
                }
            }
            Ok(())
        };
        let net = &self.network;
        for (v, what) in [
            (net.latency, "network.latency"),
            (net.jitter, "network.jitter"),
            (net.connect_fail, "network.connect_fail"),
            (net.start_spread, "network.start_spread"),
        ] {
            time(v, what)?;
        }
        for l in &net.link {
            pairs(&l.pairs, "network.link")?;
            time(l.latency, "network.link.latency")?;
            if let Some(j) = l.jitter {
                time(j, "network.link.jitter")?;
            }
        }
        for m in self.members() {
            node(m, "group.members")?;
        }
        for &m in &self.core.seed_only {
            node(m, "core.seed_only")?;
        }
        for (v, what) in [
            (self.core.sync_interval, "core.sync_interval"),
            (self.core.sync_ack_delay, "core.sync_ack_delay"),
        ] {
            if let Some(v) = v {
                time(v, what)?;
            }
        }
        node(self.group.creator, "group.creator")?;
        time(self.group.accept_delay, "group.accept_delay")?;
        for d in &self.down {
            pairs(&d.pairs, "down")?;
            time(d.from, "down.from")?;
            if let Some(u) = d.until {
                time(u, "down.until")?;
            }
        }
        for f in &self.flap {
            pairs(&f.pairs, "flap")?;
            time(f.start, "flap.start")?;
            if !(f.period > 0.0 && f.down_for > 0.0 && f.down_for < f.period) {
                return Err("flap: need 0 < down_for < period".into());
            }
        }
        for p in &self.partition {
            time(p.at, "partition.at")?;
            for side in &p.sides {
                for &i in side {
                    node(i, "partition.sides")?;
                }
            }
        }
        for c in &self.crash {
            node(c.node, "crash")?;
            time(c.at, "crash.at")?;
            if let Some(r) = c.restart {
                if r.is_nan() || r < c.at {
                    return Err("crash: restart before crash".into());
                }
            }
        }
        for f in &self.forge {
            node(f.by, "forge.by")?;
            node(f.speaker, "forge.speaker")?;
            time(f.at, "forge.at")?;
            for &t in f.to.iter().flatten() {
                node(t, "forge.to")?;
            }
            if f.text.is_empty() {
                return Err("forge: empty text".into());
            }
        }
        for i in &self.invite {
            node(i.by, "invite.by")?;
            node(i.target, "invite.target")?;
            time(i.at, "invite.at")?;
        }
        for l in &self.leave {
            node(l.node, "leave")?;
            time(l.at, "leave.at")?;
        }
        for s in &self.say {
            node(s.node, "say")?;
            time(s.at, "say.at")?;
            if s.text.is_empty() {
                return Err("say: empty text".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_scenario_parses_with_defaults() {
        let s = Scenario::from_toml("name = \"x\"\nnodes = 3\nduration = 10\n").expect("parse");
        assert_eq!(s.seeds, vec![1]);
        assert!(s.group.bootstrap);
        assert_eq!(s.members(), vec![0, 1, 2]);
        assert_eq!(s.network, Network::default());
    }

    #[test]
    fn bad_node_numbers_are_refused() {
        let e = Scenario::from_toml(
            "name = \"x\"\nnodes = 3\nduration = 10\n[[say]]\nat = 1\nnode = 3\ntext = \"a\"\n",
        );
        assert!(e.is_err());
        let e = Scenario::from_toml("name = \"x\"\nnodes = 3\nduration = 10\nbogus = 1\n");
        assert!(e.is_err());
    }
}
