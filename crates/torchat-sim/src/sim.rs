//! The discrete-event simulator: N cores, a virtual network, virtual time.
//!
//! Everything happens through one event queue ordered by (time, sequence number), so a run is
//! a pure function of the scenario and the seed. Randomness (latency jitter, start times,
//! every node's RNG) comes from ChaCha20 generators seeded from the scenario seed.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use torchat_core::{
    CommandError, Config, ConnId, Event, GroupState, MsgId, Node, Output, Presence, Timestamp,
    Trust,
};
use torchat_wire::{GroupId, OnionId, Packet};

use crate::report::{Display, MemberState, MessageReport, Report, Totals};
use crate::scenario::{Mode, Scenario};
use crate::store::Store;

/// Virtual time 0 of every run, as a Unix time in milliseconds.
pub const T0_MILLIS: u64 = 1_700_000_000_000;

/// Knobs that are not part of a scenario.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep every line written on the wire (see [`Sim::wire`]); costs memory.
    pub record_wire: bool,
    /// Stop (and report a violation) after this many events.
    pub max_events: u64,
    /// Stop (and report a violation) after this many events at one instant of virtual time.
    pub max_events_per_instant: u64,
    /// Keep a readable trace of group lines and group events (see [`Sim::trace`]).
    pub trace: bool,
    /// Count group and sync lines (totals, per-message lines and bytes) only from this
    /// virtual time on, in milliseconds (to measure a steady state).
    pub count_from_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            record_wire: false,
            max_events: 200_000_000,
            max_events_per_instant: 2_000_000,
            trace: false,
            count_from_ms: 0,
        }
    }
}

/// One line a node wrote on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireLine {
    /// Virtual time, milliseconds from the start.
    pub at: u64,
    /// The writer.
    pub from: usize,
    /// The writer's incarnation (0 = first start, +1 per restart).
    pub incarnation: u32,
    /// The node at the other end, if the connection was known.
    pub to: Option<usize>,
    /// The line, without its LF, as written (escaped).
    pub line: Vec<u8>,
    /// Forged by the simulator on behalf of a dishonest member.
    pub forged: bool,
}

impl WireLine {
    /// The line as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.line).into_owned()
    }
}

/// The node id of node `i`: a legacy v2-style id `node` + 3 base32 digits + `a`s.
pub fn node_id(i: usize) -> OnionId {
    const ALPHA: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut s = String::from("node");
    for k in (0..3).rev() {
        s.push(ALPHA[(i >> (5 * k)) & 31] as char);
    }
    while s.len() < 16 {
        s.push('a');
    }
    match OnionId::parse(&s) {
        Ok(id) => id,
        // Unreachable: the alphabet is base32 and the length is 16.
        Err(e) => panic!("bad generated id {s}: {e}"),
    }
}

/// The ed25519 key of node `i` when ids are signed (`[network] signed = true`): a fixed
/// seed per node, (secret seed, public key).
pub fn node_key(i: usize) -> ([u8; 32], [u8; 32]) {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    let pk = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    (seed, pk)
}

type Key = (usize, Vec<u8>);

#[derive(Debug)]
enum Kind {
    Start(usize),
    ConnectArrive {
        from: usize,
        gen: u32,
        conn: ConnId,
        to: usize,
        fail_at: u64,
    },
    Connected(usize),
    Closed {
        node: usize,
        gen: u32,
        conn: ConnId,
        link: Option<usize>,
    },
    Data {
        link: usize,
        dir: usize,
        data: Vec<u8>,
        directs: Vec<Vec<u8>>,
        keys: Vec<Key>,
    },
    Timer {
        node: usize,
        gen: u32,
    },
    LinkFault {
        a: usize,
        b: usize,
        down: bool,
    },
    Crash(usize),
    Restart(usize),
    /// Check that pairs that can connect are online with each other (`reconnect_within`).
    ReconnectCheck,
    Say(usize),
    Forge(usize),
    Invite {
        idx: usize,
        attempt: u32,
    },
    Accept {
        node: usize,
        gen: u32,
    },
    Leave(usize),
    End,
}

#[derive(Debug)]
struct Ev {
    at: u64,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A connection between two nodes: ends[0] dialled ends[1].
#[derive(Debug)]
struct Link {
    ends: [(usize, u32, ConnId); 2],
    /// The network broke it (link down, crash): nothing more is delivered.
    broken: bool,
    /// That end closed it (or was told it closed).
    closed: [bool; 2],
    /// Last scheduled delivery per direction (FIFO per connection).
    last: [u64; 2],
}

struct Slot {
    node: Option<Node>,
    gen: u32,
    store: Store,
    timer_at: Option<u64>,
    seed: u64,
}

/// A message said (or forged) during the run: the ground truth.
#[derive(Debug, Clone)]
struct Truth {
    speaker: usize,
    text: Vec<u8>,
    at: u64,
    forged_by: Option<usize>,
    expected: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Disp {
    shown_at: u64,
    first: Trust,
    last: Trust,
    claimants: Vec<OnionId>,
    updates: u32,
    ever_direct: bool,
}

/// The simulator. Build with [`Sim::new`], run with [`Sim::run`] (or step with
/// [`Sim::run_until`] and look at nodes in between), then [`Sim::report`].
pub struct Sim {
    sc: Scenario,
    seed: u64,
    opts: Options,
    now: u64,
    end: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Ev>>,
    rng: ChaCha20Rng,
    ids: Vec<OnionId>,
    index: BTreeMap<OnionId, usize>,
    slots: Vec<Slot>,
    links: Vec<Link>,
    ends: BTreeMap<(usize, ConnId), usize>,
    pair_links: BTreeMap<(usize, usize), BTreeSet<usize>>,
    pending: BTreeSet<(usize, ConnId)>,
    down: BTreeMap<(usize, usize), u32>,
    latency: BTreeMap<(usize, usize), (u64, u64)>,
    gid: Option<GroupId>,
    current_say: Option<usize>,
    // observations
    truths: Vec<Truth>,
    by_key: BTreeMap<Key, Vec<usize>>,
    seen: Vec<BTreeMap<MsgId, usize>>,
    disp: Vec<BTreeMap<usize, Disp>>,
    direct_ids: Vec<BTreeSet<MsgId>>,
    direct_shown: BTreeMap<(usize, usize, Vec<u8>), u32>,
    direct_delivered: BTreeMap<(usize, usize, Vec<u8>), u32>,
    key_wire: BTreeMap<Key, (u64, u64)>,
    lost_keys: BTreeSet<(usize, Key)>,
    online_since: BTreeMap<(usize, usize), u64>,
    /// (speaker, its local id) → truth index, for its own messages.
    own_ids: BTreeMap<(usize, MsgId), usize>,
    /// Since when each pair of members could have been connected (both running, link up)
    /// without seeing each other online yet, and whether it was reported late.
    reconnecting: BTreeMap<(usize, usize), (u64, bool)>,
    /// Completed reconnection times, ms.
    reconnect_times: Vec<u64>,
    totals: Totals,
    wire: Vec<WireLine>,
    trace: Vec<String>,
    violations: Vec<String>,
    notes: Vec<String>,
    same_instant: (u64, u64),
    stopped: bool,
}

fn ms(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1000.0).round() as u64
    } else {
        0
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// A simulator for one seed of a scenario (validated by the caller or here).
    pub fn new(sc: &Scenario, seed: u64, opts: Options) -> Result<Self, String> {
        sc.validate()?;
        let n = sc.nodes;
        let mut master = ChaCha20Rng::seed_from_u64(seed);
        let node_seeds: Vec<u64> = (0..n).map(|_| master.next_u64()).collect();
        let net_seed = master.next_u64();
        let ids: Vec<OnionId> = (0..n)
            .map(|i| {
                if sc.network.signed {
                    OnionId::from_ed25519_public_key(&node_key(i).1)
                } else {
                    node_id(i)
                }
            })
            .collect();
        let index = ids
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        let mut latency = BTreeMap::new();
        for l in &sc.network.link {
            let j = ms(l.jitter.unwrap_or(sc.network.jitter));
            for [a, b] in &l.pairs {
                latency.insert(pair(*a, *b), (ms(l.latency), j));
            }
        }
        let mut sim = Sim {
            sc: sc.clone(),
            seed,
            opts,
            now: 0,
            end: ms(sc.duration),
            seq: 0,
            queue: BinaryHeap::new(),
            rng: ChaCha20Rng::seed_from_u64(net_seed),
            ids,
            index,
            slots: node_seeds
                .into_iter()
                .map(|seed| Slot {
                    node: None,
                    gen: 0,
                    store: Store::default(),
                    timer_at: None,
                    seed,
                })
                .collect(),
            links: Vec::new(),
            ends: BTreeMap::new(),
            pair_links: BTreeMap::new(),
            pending: BTreeSet::new(),
            down: BTreeMap::new(),
            latency,
            gid: None,
            current_say: None,
            truths: Vec::new(),
            by_key: BTreeMap::new(),
            seen: vec![BTreeMap::new(); n],
            disp: vec![BTreeMap::new(); n],
            direct_ids: vec![BTreeSet::new(); n],
            direct_shown: BTreeMap::new(),
            direct_delivered: BTreeMap::new(),
            key_wire: BTreeMap::new(),
            lost_keys: BTreeSet::new(),
            online_since: BTreeMap::new(),
            own_ids: BTreeMap::new(),
            reconnecting: BTreeMap::new(),
            reconnect_times: Vec::new(),
            totals: Totals::default(),
            wire: Vec::new(),
            trace: Vec::new(),
            violations: Vec::new(),
            notes: Vec::new(),
            same_instant: (0, 0),
            stopped: false,
        };
        sim.setup();
        Ok(sim)
    }

    fn push(&mut self, at: u64, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Ev {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn setup(&mut self) {
        let sc = self.sc.clone();
        // The group, when bootstrapped: on every member's "disk" from the start.
        if sc.group.bootstrap {
            let mut b = [0u8; 16];
            self.rng.fill_bytes(&mut b);
            let gid = GroupId::uuid_v4(b);
            let members = sc.members();
            for &m in &members {
                let store = &mut self.slots[m].store;
                store.apply(&torchat_core::Record::Group {
                    gid: gid.clone(),
                    state: GroupState::Joined,
                    modes: sc.group.mode.modes(),
                    inviter: None,
                });
                for &o in &members {
                    if o != m {
                        store.apply(&torchat_core::Record::GroupMember {
                            gid: gid.clone(),
                            id: self.ids[o].clone(),
                            member: true,
                        });
                    }
                }
            }
            self.gid = Some(gid);
        }
        if sc.check.reconnect_within.is_some() {
            self.push(500, Kind::ReconnectCheck);
        }
        // Faults first, so that faults at t = 0 are in force before anyone connects.
        for d in &sc.down {
            for [a, b] in &d.pairs {
                self.push(
                    ms(d.from),
                    Kind::LinkFault {
                        a: *a,
                        b: *b,
                        down: true,
                    },
                );
                if let Some(u) = d.until {
                    self.push(
                        ms(u),
                        Kind::LinkFault {
                            a: *a,
                            b: *b,
                            down: false,
                        },
                    );
                }
            }
        }
        for f in &sc.flap {
            let stop = f.until.map_or(self.end, ms).min(self.end);
            let (period, down_for) = (ms(f.period).max(1), ms(f.down_for));
            let mut t = ms(f.start);
            let mut guard = 0;
            while t < stop && guard < 100_000 {
                for [a, b] in &f.pairs {
                    self.push(
                        t,
                        Kind::LinkFault {
                            a: *a,
                            b: *b,
                            down: true,
                        },
                    );
                    self.push(
                        (t + down_for).min(stop),
                        Kind::LinkFault {
                            a: *a,
                            b: *b,
                            down: false,
                        },
                    );
                }
                t += period;
                guard += 1;
            }
        }
        for p in &sc.partition {
            for (x, side_a) in p.sides.iter().enumerate() {
                for side_b in &p.sides[x + 1..] {
                    for &a in side_a {
                        for &b in side_b {
                            if a == b {
                                continue;
                            }
                            self.push(ms(p.at), Kind::LinkFault { a, b, down: true });
                            if let Some(h) = p.heal {
                                self.push(ms(h), Kind::LinkFault { a, b, down: false });
                            }
                        }
                    }
                }
            }
        }
        let spread = ms(sc.network.start_spread);
        for i in 0..sc.nodes {
            let t = if spread > 0 {
                self.rng.next_u64() % (spread + 1)
            } else {
                0
            };
            self.push(t, Kind::Start(i));
        }
        for c in &sc.crash {
            self.push(ms(c.at), Kind::Crash(c.node));
            if let Some(r) = c.restart {
                self.push(ms(r), Kind::Restart(c.node));
            }
        }
        for (idx, f) in sc.forge.iter().enumerate() {
            self.push(ms(f.at), Kind::Forge(idx));
        }
        for (idx, i) in sc.invite.iter().enumerate() {
            self.push(ms(i.at), Kind::Invite { idx, attempt: 0 });
        }
        for (idx, l) in sc.leave.iter().enumerate() {
            self.push(ms(l.at), Kind::Leave(idx));
        }
        for (idx, s) in sc.say.iter().enumerate() {
            self.push(ms(s.at), Kind::Say(idx));
        }
        self.push(self.end, Kind::End);
    }

    // ----- accessors -----

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> &OnionId {
        &self.ids[i]
    }

    /// Node `i`'s core, if it is running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.slots.get(i).and_then(|s| s.node.as_ref())
    }

    /// Node `i`'s stored records.
    pub fn store(&self, i: usize) -> Option<&Store> {
        self.slots.get(i).map(|s| &s.store)
    }

    /// The group of the scenario, once it exists.
    pub fn gid(&self) -> Option<&GroupId> {
        self.gid.as_ref()
    }

    /// Virtual time now, milliseconds from the start.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Lines written so far (only with [`Options::record_wire`]).
    pub fn wire(&self) -> &[WireLine] {
        &self.wire
    }

    /// The trace so far (only with [`Options::trace`]).
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    fn tr(&mut self, f: impl FnOnce() -> String) {
        if self.opts.trace {
            let line = format!("{:>10.3} {}", secs(self.now), f());
            self.trace.push(line);
        }
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    fn ts(&self) -> Timestamp {
        Timestamp::from_millis(T0_MILLIS + self.now)
    }

    fn alive(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }

    fn is_down(&self, a: usize, b: usize) -> bool {
        self.down.get(&pair(a, b)).is_some_and(|c| *c > 0)
    }

    fn delay(&mut self, a: usize, b: usize) -> u64 {
        let (base, jitter) = self
            .latency
            .get(&pair(a, b))
            .copied()
            .unwrap_or((ms(self.sc.network.latency), ms(self.sc.network.jitter)));
        let j = if jitter > 0 {
            self.rng.next_u64() % (jitter + 1)
        } else {
            0
        };
        base + j
    }

    // ----- running -----

    /// Runs to the end of the scenario and returns the report.
    pub fn run(mut self) -> Report {
        self.run_until(f64::INFINITY);
        self.report()
    }

    /// Processes every event up to `t` seconds (or the end of the run).
    pub fn run_until(&mut self, t: f64) {
        let limit = if t.is_finite() { ms(t) } else { u64::MAX };
        while !self.stopped {
            let next = match self.queue.peek() {
                Some(Reverse(ev)) if ev.at <= limit => ev.at,
                _ => break,
            };
            let Some(Reverse(ev)) = self.queue.pop() else {
                break;
            };
            self.now = next;
            self.totals.events += 1;
            if self.same_instant.0 == next {
                self.same_instant.1 += 1;
            } else {
                self.same_instant = (next, 1);
            }
            if self.same_instant.1 > self.opts.max_events_per_instant
                || self.totals.events > self.opts.max_events
            {
                self.violations.push(format!(
                    "livelock guard: {} events at t = {:.3} s ({} in all); run stopped",
                    self.same_instant.1,
                    secs(next),
                    self.totals.events
                ));
                self.stopped = true;
                break;
            }
            self.process(ev.kind);
        }
    }

    fn process(&mut self, kind: Kind) {
        match kind {
            Kind::Start(i) => self.spawn(i),
            Kind::Restart(i) => {
                if self.alive(i) {
                    self.notes.push(format!("restart of n{i}: it is running"));
                } else {
                    self.spawn(i);
                }
            }
            Kind::Crash(i) => self.crash(i),
            Kind::ReconnectCheck => self.reconnect_check(),
            Kind::ConnectArrive {
                from,
                gen,
                conn,
                to,
                fail_at,
            } => self.connect_arrive(from, gen, conn, to, fail_at),
            Kind::Connected(l) => {
                let link = &self.links[l];
                let (i, gen, conn) = link.ends[0];
                if link.broken || link.closed[0] || self.slots[i].gen != gen {
                    return;
                }
                let now = self.ts();
                if let Some(n) = self.slots[i].node.as_mut() {
                    n.handle_connected(conn, now);
                }
                self.drain(i);
            }
            Kind::Closed {
                node,
                gen,
                conn,
                link,
            } => {
                if let Some(l) = link {
                    let lk = &mut self.links[l];
                    for d in 0..2 {
                        if lk.ends[d] == (node, gen, conn) {
                            lk.closed[d] = true;
                        }
                    }
                    if lk.closed[0] && lk.closed[1] {
                        let (a, b) = (lk.ends[0].0, lk.ends[1].0);
                        if let Some(s) = self.pair_links.get_mut(&pair(a, b)) {
                            s.remove(&l);
                        }
                    }
                }
                if self.slots[node].gen != gen {
                    return;
                }
                self.ends.remove(&(node, conn));
                let now = self.ts();
                if let Some(n) = self.slots[node].node.as_mut() {
                    n.handle_closed(conn, now);
                }
                self.drain(node);
            }
            Kind::Data {
                link,
                dir,
                data,
                directs,
                keys,
            } => self.deliver(link, dir, data, directs, keys),
            Kind::Timer { node, gen } => {
                if self.slots[node].gen != gen || self.slots[node].timer_at != Some(self.now) {
                    return;
                }
                self.slots[node].timer_at = None;
                let now = self.ts();
                if let Some(n) = self.slots[node].node.as_mut() {
                    if n.poll_timeout().is_some_and(|t| t <= now) {
                        n.handle_timeout(now);
                    }
                }
                self.drain(node);
            }
            Kind::LinkFault { a, b, down } => {
                self.tr(|| format!("link n{a}-n{b} {}", if down { "down" } else { "up" }));
                let c = self.down.entry(pair(a, b)).or_insert(0);
                if down {
                    *c += 1;
                    if *c == 1 {
                        self.break_pair(a, b);
                    }
                } else {
                    *c = c.saturating_sub(1);
                }
            }
            Kind::Say(idx) => self.say(idx),
            Kind::Forge(idx) => self.forge(idx),
            Kind::Invite { idx, attempt } => self.invite(idx, attempt),
            Kind::Accept { node, gen } => {
                if self.slots[node].gen != gen {
                    return;
                }
                self.command(node, "accept", |n, gid, now| n.group_accept(gid, now));
            }
            Kind::Leave(idx) => {
                let node = self.sc.leave[idx].node;
                self.command(node, "leave", |n, gid, now| n.group_leave(gid, None, now));
            }
            Kind::End => self.stopped = true,
        }
    }

    /// Builds node `i` from its store and starts it.
    fn spawn(&mut self, i: usize) {
        let gen = self.slots[i].gen;
        self.tr(|| format!("n{i} start (incarnation {gen})"));
        let mut cfg = Config::new(self.ids[i].clone());
        cfg.profile_name = format!("n{i}").into_bytes();
        if self.sc.network.signed {
            cfg.signing_key = Some(node_key(i).0);
        }
        let o = &self.sc.core;
        if let Some(v) = o.sync {
            cfg.sync = v;
        }
        if o.seed_only.contains(&i) {
            cfg.sync = false;
        }
        if let Some(v) = o.sync_interval {
            cfg.sync_interval = Duration::from_millis(ms(v).max(1));
        }
        if let Some(v) = o.sync_ack_delay {
            cfg.sync_ack_delay = Duration::from_millis(ms(v));
        }
        if let Some(v) = o.settle_window {
            cfg.settle_window = Duration::from_millis(ms(v));
        }
        if let Some(v) = o.relay_lifetime {
            cfg.relay_lifetime = Duration::from_millis(ms(v));
        }
        if let Some(v) = o.backoff_initial {
            cfg.backoff_initial = Duration::from_millis(ms(v));
        }
        if let Some(v) = o.backoff_max {
            cfg.backoff_max = Duration::from_millis(ms(v));
        }
        let slot = &mut self.slots[i];
        let mut rng = ChaCha20Rng::seed_from_u64(slot.seed);
        rng.set_stream(u64::from(slot.gen));
        let mut node = Node::new(cfg, Box::new(rng));
        slot.store.restore(&mut node);
        let first = slot.gen == 0;
        slot.node = Some(node);
        let now = self.ts();
        if first {
            // Invitations need the invitee on the inviter's buddy list.
            let targets: Vec<usize> = self
                .sc
                .invite
                .iter()
                .filter(|v| v.by == i)
                .map(|v| v.target)
                .collect();
            for t in targets {
                let id = self.ids[t].clone();
                if let Some(n) = self.slots[i].node.as_mut() {
                    if let Err(e) = n.add_buddy(id, None, now) {
                        self.notes.push(format!("n{i} add_buddy n{t}: {e}"));
                    }
                }
            }
        }
        if let Some(n) = self.slots[i].node.as_mut() {
            n.start(now);
        }
        self.drain(i);
        if first && !self.sc.group.bootstrap && i == self.sc.group.creator {
            let modes = self.sc.group.mode.modes();
            let r = self.slots[i]
                .node
                .as_mut()
                .map(|n| n.group_create(modes, now));
            match r {
                Some(Ok(gid)) => self.gid = Some(gid),
                Some(Err(e)) => self.notes.push(format!("n{i} group_create: {e}")),
                None => {}
            }
            self.drain(i);
        }
    }

    /// The reconnection invariant: members that are both running with their link up see each
    /// other online within `check.reconnect_within` seconds.
    fn reconnect_check(&mut self) {
        let Some(limit) = self.sc.check.reconnect_within else {
            return;
        };
        let members = self.sc.members();
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                let able = self.alive(a) && self.alive(b) && !self.is_down(a, b);
                let online = self.online_since.contains_key(&(a, b))
                    && self.online_since.contains_key(&(b, a));
                match (able && !online, self.reconnecting.get(&(a, b)).copied()) {
                    (true, None) => {
                        self.reconnecting.insert((a, b), (self.now, false));
                    }
                    (true, Some((since, false))) if self.now.saturating_sub(since) > ms(limit) => {
                        self.violations.push(format!(
                            "t={:.1}s n{a} and n{b} have both been running with their link up \
                             since t={:.1}s and are still not online with each other",
                            secs(self.now),
                            secs(since)
                        ));
                        self.reconnecting.insert((a, b), (since, true));
                    }
                    (false, Some((since, _))) => {
                        if able && online {
                            self.reconnect_times.push(self.now.saturating_sub(since));
                        }
                        self.reconnecting.remove(&(a, b));
                    }
                    _ => {}
                }
            }
        }
        let next = self.now + 500;
        if next <= ms(self.sc.duration) {
            self.push(next, Kind::ReconnectCheck);
        }
    }

    fn crash(&mut self, i: usize) {
        self.tr(|| format!("n{i} CRASH"));
        if !self.alive(i) {
            self.notes.push(format!("crash of n{i}: it is not running"));
            return;
        }
        self.slots[i].node = None;
        self.slots[i].gen += 1;
        self.slots[i].timer_at = None;
        let mine: Vec<usize> = self
            .ends
            .iter()
            .filter(|((n, _), _)| *n == i)
            .map(|(_, l)| *l)
            .collect();
        self.ends.retain(|(n, _), _| *n != i);
        self.pending.retain(|(n, _)| *n != i);
        for l in mine {
            self.break_link(l);
        }
        let keys: Vec<(usize, usize)> = self
            .online_since
            .keys()
            .filter(|(a, b)| *a == i || *b == i)
            .copied()
            .collect();
        for k in keys {
            self.online_since.remove(&k);
        }
    }

    fn break_pair(&mut self, a: usize, b: usize) {
        let ls: Vec<usize> = self
            .pair_links
            .get(&pair(a, b))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for l in ls {
            self.break_link(l);
        }
    }

    /// The network kills a connection: in-flight data is lost, both ends see a close.
    fn break_link(&mut self, l: usize) {
        if self.links[l].broken {
            return;
        }
        self.links[l].broken = true;
        let (a, b) = (self.links[l].ends[0].0, self.links[l].ends[1].0);
        if let Some(s) = self.pair_links.get_mut(&pair(a, b)) {
            s.remove(&l);
        }
        for d in 0..2 {
            if self.links[l].closed[d] {
                continue;
            }
            let (n, gen, conn) = self.links[l].ends[d];
            if self.slots[n].gen != gen {
                continue;
            }
            let at = self.now + self.delay(a, b);
            self.push(
                at,
                Kind::Closed {
                    node: n,
                    gen,
                    conn,
                    link: Some(l),
                },
            );
        }
    }

    fn connect_arrive(&mut self, i: usize, gen: u32, conn: ConnId, j: usize, fail_at: u64) {
        if self.slots[i].gen != gen || !self.pending.remove(&(i, conn)) {
            return; // the dialler crashed or gave up
        }
        let refused = self.is_down(i, j) || !self.alive(j);
        let jc = if refused {
            None
        } else {
            let now = self.ts();
            let jc = self.slots[j].node.as_mut().and_then(|n| n.accept(now));
            self.drain(j);
            if jc.is_none() {
                self.notes.push(format!(
                    "t={:.1}s n{j} refused a connection from n{i} (caps)",
                    secs(self.now)
                ));
            }
            jc
        };
        let Some(jc) = jc else {
            self.totals.failed_connects += 1;
            let at = fail_at.max(self.now);
            self.push(
                at,
                Kind::Closed {
                    node: i,
                    gen,
                    conn,
                    link: None,
                },
            );
            return;
        };
        let l = self.links.len();
        self.links.push(Link {
            ends: [(i, gen, conn), (j, self.slots[j].gen, jc)],
            broken: false,
            closed: [false, false],
            last: [0, 0],
        });
        self.ends.insert((i, conn), l);
        self.ends.insert((j, jc), l);
        self.pair_links.entry(pair(i, j)).or_default().insert(l);
        self.totals.connections += 1;
        let at = self.now + self.delay(i, j);
        self.push(at, Kind::Connected(l));
    }

    /// Drains node `i`'s outputs and carries them out; then re-arms its timer.
    fn drain(&mut self, i: usize) {
        let mut guard: u64 = 0;
        while let Some(out) = self.slots[i].node.as_mut().and_then(|n| n.poll_output()) {
            guard += 1;
            if guard > 10_000_000 {
                self.violations.push(format!(
                    "livelock guard: n{i} produced over 10M outputs at once"
                ));
                self.stopped = true;
                break;
            }
            match out {
                Output::Persist(r) => {
                    self.totals.records += 1;
                    self.slots[i].store.apply(&r);
                }
                Output::Connect { conn, to } => self.on_connect(i, conn, &to),
                Output::Transmit { conn, data } => self.on_transmit(i, conn, data, false),
                Output::Close { conn } => self.on_close(i, conn),
                Output::Event(e) => self.on_event(i, e),
                Output::Load(req) => {
                    let copies = self.slots[i].store.load(&req);
                    let now = self.ts();
                    if let Some(n) = self.slots[i].node.as_mut() {
                        n.handle_loaded(req.token, copies, now);
                    }
                }
                // The simulator moves no files.
                Output::File(_) => {}
            }
        }
        let next = self.slots[i]
            .node
            .as_ref()
            .and_then(|n| n.poll_timeout())
            .map(|t| t.as_millis().saturating_sub(T0_MILLIS).max(self.now));
        let slot = &mut self.slots[i];
        match next {
            Some(t) if slot.timer_at != Some(t) => {
                slot.timer_at = Some(t);
                let gen = slot.gen;
                self.push(t, Kind::Timer { node: i, gen });
            }
            Some(_) => {}
            None => slot.timer_at = None,
        }
    }

    fn on_connect(&mut self, i: usize, conn: ConnId, to: &OnionId) {
        let gen = self.slots[i].gen;
        let fail_at = self.now + ms(self.sc.network.connect_fail);
        let Some(&j) = self.index.get(to) else {
            self.totals.failed_connects += 1;
            self.push(
                fail_at,
                Kind::Closed {
                    node: i,
                    gen,
                    conn,
                    link: None,
                },
            );
            return;
        };
        self.pending.insert((i, conn));
        let at = self.now + self.delay(i, j);
        self.push(
            at,
            Kind::ConnectArrive {
                from: i,
                gen,
                conn,
                to: j,
                fail_at,
            },
        );
    }

    fn on_close(&mut self, i: usize, conn: ConnId) {
        if self.pending.remove(&(i, conn)) {
            return; // an attempt still under way: it is abandoned
        }
        let Some(l) = self.ends.remove(&(i, conn)) else {
            return;
        };
        let gen = self.slots[i].gen;
        let link = &mut self.links[l];
        let Some(d) = (0..2).find(|d| link.ends[*d] == (i, gen, conn)) else {
            return;
        };
        link.closed[d] = true;
        if link.broken || link.closed[1 - d] {
            return;
        }
        let (j, gj, jc) = link.ends[1 - d];
        let last = link.last[d];
        let at = (self.now + self.delay(i, j)).max(last);
        self.push(
            at,
            Kind::Closed {
                node: j,
                gen: gj,
                conn: jc,
                link: Some(l),
            },
        );
    }

    /// Accounts the lines of a write and schedules their delivery.
    fn on_transmit(&mut self, i: usize, conn: ConnId, data: Vec<u8>, forged: bool) {
        let l = self.ends.get(&(i, conn)).copied();
        let gen = self.slots[i].gen;
        let (to, dir) = match l {
            Some(l) => {
                let d = usize::from(self.links[l].ends[0].0 != i);
                (Some(self.links[l].ends[1 - d].0), d)
            }
            None => (None, 0),
        };
        let mut directs = Vec::new();
        let mut keys = Vec::new();
        for line in data.split_inclusive(|b| *b == b'\n') {
            let bytes = line.len() as u64;
            self.totals.lines += 1;
            self.totals.bytes += bytes;
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            if self.opts.record_wire {
                self.wire.push(WireLine {
                    at: self.now,
                    from: i,
                    incarnation: gen,
                    to,
                    line: body.to_vec(),
                    forged,
                });
            }
            if !body.starts_with(b"groupchat_") || self.now < self.opts.count_from_ms {
                continue;
            }
            if self.opts.trace {
                let to = to.map_or_else(|| "?".to_owned(), |j| format!("n{j}"));
                let f = if forged { " (FORGED)" } else { "" };
                let text = String::from_utf8_lossy(body).into_owned();
                self.tr(|| format!("n{i} -> {to}{f}: {text}"));
            }
            let key = match Packet::decode(body) {
                Ok(Packet::GroupMessage { text, .. } | Packet::GroupSignedMessage { text, .. }) => {
                    self.totals.message_lines += 1;
                    directs.push(text.clone());
                    (i, text)
                }
                Ok(Packet::GroupSyncMessage { speaker, text, .. })
                    if self.index.get(&speaker) == Some(&i) =>
                {
                    self.totals.message_lines += 1;
                    directs.push(text.clone());
                    (i, text)
                }
                Ok(
                    Packet::GroupEchoedMessage { sender, text, .. }
                    | Packet::GroupSignedEcho { sender, text, .. }
                    | Packet::GroupSyncMessage {
                        speaker: sender,
                        text,
                        ..
                    },
                ) => {
                    self.totals.echo_lines += 1;
                    match self.index.get(&sender) {
                        Some(&s) => (s, text),
                        None => continue,
                    }
                }
                Ok(
                    Packet::GroupSyncAck { .. }
                    | Packet::GroupSyncDigest { .. }
                    | Packet::GroupSyncWant { .. }
                    | Packet::GroupSyncEnd { .. }
                    | Packet::GroupSyncTell { .. },
                ) => {
                    self.totals.digest_lines += 1;
                    self.totals.digest_bytes += bytes;
                    continue;
                }
                _ => continue,
            };
            self.totals.group_bytes += bytes;
            let w = self.key_wire.entry(key.clone()).or_insert((0, 0));
            w.0 += 1;
            w.1 += bytes;
            keys.push(key);
        }
        let Some(l) = l else {
            return;
        };
        let Some(j) = to else {
            return;
        };
        let link = &self.links[l];
        if link.broken || link.closed[1 - dir] {
            let lines = data.split_inclusive(|b| *b == b'\n').count() as u64;
            self.lost(j, lines, keys);
            return;
        }
        let at = (self.now + self.delay(i, j)).max(self.links[l].last[dir]);
        self.links[l].last[dir] = at;
        self.push(
            at,
            Kind::Data {
                link: l,
                dir,
                data,
                directs,
                keys,
            },
        );
    }

    fn lost(&mut self, to: usize, lines: u64, keys: Vec<Key>) {
        self.totals.lost_lines += lines;
        self.totals.lost_group_lines += keys.len() as u64;
        for k in keys {
            self.lost_keys.insert((to, k));
        }
    }

    fn deliver(
        &mut self,
        l: usize,
        dir: usize,
        data: Vec<u8>,
        directs: Vec<Vec<u8>>,
        keys: Vec<Key>,
    ) {
        let link = &self.links[l];
        let from = link.ends[dir].0;
        let (j, gen, conn) = link.ends[1 - dir];
        if link.broken || link.closed[1 - dir] || self.slots[j].gen != gen || !self.alive(j) {
            let lines = data.split_inclusive(|b| *b == b'\n').count() as u64;
            self.lost(j, lines, keys);
            return;
        }
        for t in directs {
            *self.direct_delivered.entry((from, j, t)).or_insert(0) += 1;
        }
        let now = self.ts();
        if let Some(n) = self.slots[j].node.as_mut() {
            n.handle_data(conn, &data, now);
        }
        self.drain(j);
    }

    // ----- scenario actions -----

    /// Runs a group command on node `i`, noting errors.
    fn command(
        &mut self,
        i: usize,
        what: &str,
        f: impl FnOnce(&mut Node, &GroupId, Timestamp) -> Result<(), CommandError>,
    ) -> Option<Result<(), CommandError>> {
        let now = self.ts();
        let Some(gid) = self.gid.clone() else {
            self.notes.push(format!(
                "t={:.1}s n{i} {what}: no group yet",
                secs(self.now)
            ));
            return None;
        };
        let Some(n) = self.slots[i].node.as_mut() else {
            self.notes.push(format!(
                "t={:.1}s n{i} {what}: node is down",
                secs(self.now)
            ));
            return None;
        };
        let r = f(n, &gid, now);
        self.drain(i);
        if let Err(e) = &r {
            self.notes
                .push(format!("t={:.1}s n{i} {what}: {e}", secs(self.now)));
        }
        Some(r)
    }

    fn say(&mut self, idx: usize) {
        let say = self.sc.say[idx].clone();
        let i = say.node;
        let (Some(gid), Some(n)) = (self.gid.clone(), self.slots[i].node.as_ref()) else {
            self.notes.push(format!(
                "t={:.1}s n{i} say {:?}: node down or no group",
                secs(self.now),
                say.text
            ));
            return;
        };
        let mut expected: Vec<usize> = n
            .group(&gid)
            .map(|g| {
                g.members
                    .iter()
                    .filter_map(|m| self.index.get(m).copied())
                    .collect()
            })
            .unwrap_or_default();
        expected.sort_unstable();
        let m = self.truths.len();
        let text = say.text.into_bytes();
        self.truths.push(Truth {
            speaker: i,
            text: text.clone(),
            at: self.now,
            forged_by: None,
            expected,
        });
        self.current_say = Some(m);
        let now = self.ts();
        let r = self.slots[i]
            .node
            .as_mut()
            .map(|n| n.group_say(&gid, text.clone(), now));
        match r {
            Some(Ok(id)) => {
                self.own_ids.insert((i, id), m);
                self.by_key.entry((i, text)).or_default().push(m)
            }
            Some(Err(e)) => {
                self.truths.pop();
                self.notes.push(format!(
                    "t={:.1}s n{i} say {:?}: {e}",
                    secs(self.now),
                    String::from_utf8_lossy(&text)
                ));
            }
            None => {
                self.truths.pop();
            }
        }
        self.drain(i);
        self.current_say = None;
    }

    fn forge(&mut self, idx: usize) {
        let f = self.sc.forge[idx].clone();
        let r = f.by;
        let (Some(gid), Some(node)) = (self.gid.clone(), self.slots[r].node.as_ref()) else {
            self.notes
                .push(format!("forge #{idx}: n{r} is down or there is no group"));
            return;
        };
        let targets: Vec<usize> = match &f.to {
            Some(t) => t.clone(),
            None => node
                .group(&gid)
                .map(|g| {
                    g.members
                        .iter()
                        .filter_map(|m| self.index.get(m).copied())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut conns = Vec::new();
        for x in targets {
            if x == r || x == f.speaker {
                continue;
            }
            let out = node.buddy(&self.ids[x]).and_then(|b| b.outgoing);
            let up = out.and_then(|c| self.ends.get(&(r, c)).map(|l| (c, *l)));
            match up {
                Some((c, l)) if !self.links[l].broken && !self.pending.contains(&(r, c)) => {
                    conns.push(c)
                }
                _ => self.notes.push(format!(
                    "forge #{idx}: n{r} has no established connection to n{x}"
                )),
            }
        }
        let text = f.text.into_bytes();
        let m = self.truths.len();
        self.truths.push(Truth {
            speaker: f.speaker,
            text: text.clone(),
            at: self.now,
            forged_by: Some(r),
            expected: Vec::new(),
        });
        self.by_key
            .entry((f.speaker, text.clone()))
            .or_default()
            .push(m);
        let line = Packet::GroupEchoedMessage {
            gid,
            sender: self.ids[f.speaker].clone(),
            text,
        }
        .encode();
        for c in conns {
            self.on_transmit(r, c, line.clone(), true);
        }
    }

    fn invite(&mut self, idx: usize, attempt: u32) {
        let v = self.sc.invite[idx].clone();
        let target = self.ids[v.target].clone();
        let now = self.ts();
        let (Some(gid), Some(n)) = (self.gid.clone(), self.slots[v.by].node.as_mut()) else {
            self.notes.push(format!(
                "t={:.1}s invite n{} by n{}: inviter down or no group",
                secs(self.now),
                v.target,
                v.by
            ));
            return;
        };
        let r = n.group_invite(&gid, &target, now);
        self.drain(v.by);
        match r {
            Ok(()) => {}
            Err(CommandError::NotOnline) if attempt < 60 => {
                let at = self.now + 2000;
                self.push(
                    at,
                    Kind::Invite {
                        idx,
                        attempt: attempt + 1,
                    },
                );
            }
            Err(e) => self.notes.push(format!(
                "t={:.1}s n{} invite n{}: {e}",
                secs(self.now),
                v.by,
                v.target
            )),
        }
    }

    // ----- observing the nodes -----

    fn on_event(&mut self, i: usize, e: Event) {
        if self.opts.trace {
            let interesting = matches!(
                e,
                Event::GroupMessage { .. }
                    | Event::GroupTrust { .. }
                    | Event::GroupState { .. }
                    | Event::GroupMember { .. }
                    | Event::GroupInvite { .. }
                    | Event::GroupDivergence { .. }
                    | Event::OutboxDropped { .. }
                    | Event::Presence { .. }
                    | Event::Misbehaviour { .. }
            );
            if interesting {
                let mut text = format!("{e:?}");
                for (k, id) in self.ids.iter().enumerate().rev() {
                    text = text.replace(&format!("OnionId({})", id.as_str()), &format!("n{k}"));
                    text = text.replace(id.as_str(), &format!("n{k}"));
                }
                self.tr(|| format!("n{i} event {text}"));
            }
        }
        match e {
            Event::GroupMessage {
                gid,
                id,
                sender,
                text,
                trust,
                ..
            } => self.on_display(i, &gid, id, &sender, text, trust),
            Event::GroupTrust {
                gid,
                id,
                trust,
                claimants,
            } => self.on_trust(i, &gid, id, trust, claimants),
            Event::Presence { id, presence } => {
                if let Some(&x) = self.index.get(&id) {
                    if matches!(presence, Presence::Online(_)) {
                        self.online_since.entry((i, x)).or_insert(self.now);
                    } else {
                        self.online_since.remove(&(i, x));
                    }
                }
            }
            Event::GroupDelivery {
                gid, id, delivered, ..
            } => self.check_acks(i, &gid, id, delivered),
            Event::GroupInvite { gid, .. }
                if self.gid.as_ref() == Some(&gid) && self.sc.group.auto_accept =>
            {
                let at = self.now + ms(self.sc.group.accept_delay);
                let gen = self.slots[i].gen;
                self.push(at, Kind::Accept { node: i, gen });
            }
            _ => {}
        }
    }

    fn check_gid(&mut self, i: usize, gid: &GroupId) -> bool {
        if self.gid.as_ref() == Some(gid) {
            return true;
        }
        self.violations
            .push(format!("n{i} reported an event for an unknown group {gid}"));
        false
    }

    fn on_display(
        &mut self,
        i: usize,
        gid: &GroupId,
        id: MsgId,
        sender: &OnionId,
        text: Vec<u8>,
        trust: Trust,
    ) {
        if !self.check_gid(i, gid) {
            return;
        }
        let Some(&s) = self.index.get(sender) else {
            self.violations
                .push(format!("n{i} showed a message from a stranger {sender}"));
            return;
        };
        let t = secs(self.now);
        let shown = String::from_utf8_lossy(&text).into_owned();
        if trust == Trust::Own {
            if s != i || self.current_say.is_none() {
                self.violations.push(format!(
                    "t={t:.1}s n{i} showed {shown:?} from n{s} as its own"
                ));
            }
            return;
        }
        if s == i {
            self.violations.push(format!(
                "t={t:.1}s n{i} showed its own message {shown:?} as someone else's ({})",
                trust.label()
            ));
            return;
        }
        if self.seen[i].contains_key(&id) {
            self.violations.push(format!(
                "t={t:.1}s n{i} showed message {id} ({shown:?} from n{s}) twice"
            ));
            return;
        }
        let key = (s, text);
        let cand = self.by_key.get(&key).and_then(|v| {
            v.iter()
                .copied()
                .find(|m| !self.disp[i].contains_key(m) && self.truths[*m].at <= self.now)
        });
        let Some(m) = cand else {
            let said = self.by_key.get(&key).map_or(0, Vec::len);
            self.violations.push(format!(
                "t={t:.1}s n{i} showed {shown:?} from n{s} ({}) more often than it was said or forged ({said} times)",
                trust.label()
            ));
            return;
        };
        self.seen[i].insert(id, m);
        // The event does not carry the claimants; the query does.
        let claimants = self.slots[i]
            .node
            .as_ref()
            .and_then(|n| n.group_claimants(gid, id))
            .map(|(_, c)| c)
            .unwrap_or_default();
        self.disp[i].insert(
            m,
            Disp {
                shown_at: self.now,
                first: trust,
                last: trust,
                claimants,
                updates: 0,
                ever_direct: false,
            },
        );
        if matches!(trust, Trust::Direct { .. }) {
            self.check_direct(i, m, id);
        }
    }

    fn on_trust(
        &mut self,
        i: usize,
        gid: &GroupId,
        id: MsgId,
        trust: Trust,
        claimants: Vec<OnionId>,
    ) {
        if !self.check_gid(i, gid) {
            return;
        }
        let Some(&m) = self.seen[i].get(&id) else {
            self.violations.push(format!(
                "t={:.1}s n{i} updated the trust of message {id}, which it never showed",
                secs(self.now)
            ));
            return;
        };
        if let Some(d) = self.disp[i].get_mut(&m) {
            d.last = trust;
            d.claimants = claimants;
            d.updates += 1;
        }
        if matches!(trust, Trust::Direct { .. }) {
            self.check_direct(i, m, id);
        }
    }

    /// Whether node `i` speaks `torchat_sync`.
    fn is_sync(&self, i: usize) -> bool {
        self.sc.core.sync.unwrap_or(true) && !self.sc.core.seed_only.contains(&i)
    }

    /// An acknowledgement never names a member that does not hold the message: every member
    /// the speaker counts (and names, [`Node::sync_holders`]) has shown it.
    fn check_acks(&mut self, i: usize, gid: &GroupId, id: MsgId, delivered: u32) {
        let Some(&m) = self.own_ids.get(&(i, id)) else {
            return;
        };
        let holders = self.slots[i]
            .node
            .as_ref()
            .and_then(|n| n.sync_holders(gid, id))
            .unwrap_or_default();
        let t = secs(self.now);
        for h in &holders {
            let Some(&x) = self.index.get(h) else {
                continue;
            };
            if !self.disp[x].contains_key(&m) {
                self.violations.push(format!(
                    "t={t:.1}s n{i} counts n{x} as holding #{m}, which n{x} never showed"
                ));
            }
        }
        // (The count never goes down: a member that acknowledged and left later still got it.)
        let shown = (0..self.sc.nodes)
            .filter(|x| self.disp[*x].contains_key(&m))
            .count();
        if delivered as usize > shown {
            self.violations.push(format!(
                "t={t:.1}s n{i} says #{m} is delivered to {delivered}, but {shown} members have it"
            ));
        }
    }

    /// A message shown `(Direct)` at `i` needs a `groupchat_message` line from its speaker
    /// delivered to `i` — one per message with that text.
    fn check_direct(&mut self, i: usize, m: usize, id: MsgId) {
        if let Some(d) = self.disp[i].get_mut(&m) {
            d.ever_direct = true;
        }
        if !self.direct_ids[i].insert(id) {
            return;
        }
        let (s, text) = (self.truths[m].speaker, self.truths[m].text.clone());
        let shown = self.direct_shown.entry((i, s, text.clone())).or_insert(0);
        *shown += 1;
        let shown = *shown;
        let delivered = self
            .direct_delivered
            .get(&(s, i, text.clone()))
            .copied()
            .unwrap_or(0);
        if shown > delivered {
            self.violations.push(format!(
                "t={:.1}s n{i} shows {:?} from n{s} (Direct) {shown} time(s), but n{s} delivered only {delivered} groupchat_message line(s) with that text to it",
                secs(self.now),
                String::from_utf8_lossy(&text)
            ));
        }
    }

    // ----- the report -----

    /// Checks the end-of-run invariants and builds the report (call after running).
    pub fn report(mut self) -> Report {
        let n = self.sc.nodes;
        let end = self.now;
        let gid = self.gid.clone();
        // Members at the end.
        let mut members = Vec::new();
        for i in 0..n {
            let node = self.slots[i].node.as_ref();
            let view = node.zip(gid.as_ref()).and_then(|(nd, g)| nd.group(g));
            let mut ms: Vec<usize> = view
                .as_ref()
                .map(|v| {
                    v.members
                        .iter()
                        .filter_map(|m| self.index.get(m).copied())
                        .chain(std::iter::once(i))
                        .collect()
                })
                .unwrap_or_default();
            ms.sort_unstable();
            members.push(MemberState {
                node: i,
                alive: node.is_some(),
                state: view
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |v| format!("{:?}", v.state)),
                members: ms,
                outbox: node.map_or(0, |nd| nd.outbox_len()),
            });
        }
        let joined = |m: &MemberState| m.alive && m.state == "Joined";
        if self.sc.check.members_agree {
            let live: Vec<&MemberState> = members.iter().filter(|m| joined(m)).collect();
            if let Some(first) = live.first() {
                if live.iter().any(|m| m.members != first.members) {
                    let lists: Vec<String> = live
                        .iter()
                        .map(|m| format!("n{}: {:?}", m.node, m.members))
                        .collect();
                    self.violations.push(format!(
                        "member lists disagree at the end: {}",
                        lists.join("; ")
                    ));
                }
            }
        }
        // Messages.
        let settle = self
            .sc
            .core
            .settle_window
            .map_or(10_000, ms)
            .saturating_add(5_000);
        let redundancy = self.sc.group.mode == Mode::Redundancy;
        let mut reports = Vec::new();
        let mut totals = self.totals.clone();
        let mut violations = Vec::new();
        for (m, t) in self.truths.iter().enumerate() {
            let key = (t.speaker, t.text.clone());
            let repeats = self.by_key.get(&key).map_or(1, Vec::len).max(1) as f64;
            let (lines, bytes) = self.key_wire.get(&key).copied().unwrap_or((0, 0));
            let mut displays = Vec::new();
            for i in 0..n {
                if let Some(d) = self.disp[i].get(&m) {
                    let claimants = d
                        .claimants
                        .iter()
                        .filter_map(|c| self.index.get(c).copied())
                        .collect();
                    displays.push(Display {
                        node: i,
                        shown_at: secs(d.shown_at),
                        first: d.first,
                        last: d.last,
                        label: d.last.label(),
                        claimants,
                        updates: d.updates,
                    });
                }
            }
            let shown = |i: usize| self.disp[i].contains_key(&m);
            let missing: Vec<usize> = t.expected.iter().copied().filter(|i| !shown(*i)).collect();
            let delivered = t.expected.len() - missing.len();
            let last = t
                .expected
                .iter()
                .filter_map(|i| self.disp[*i].get(&m))
                .map(|d| d.shown_at.saturating_sub(t.at))
                .max();
            if t.forged_by.is_none() {
                totals.pairs_expected += t.expected.len();
                totals.pairs_displayed += delivered;
                if redundancy && self.sc.check.relay_reaches_connected {
                    // Who has it first-hand: the speaker and every direct receiver.
                    let sources: Vec<usize> = std::iter::once(t.speaker)
                        .chain(
                            (0..n).filter(|x| self.disp[*x].get(&m).is_some_and(|d| d.ever_direct)),
                        )
                        .collect();
                    for &mm in &missing {
                        if !members[mm].alive || members[mm].state != "Joined" {
                            continue;
                        }
                        if self.lost_keys.contains(&(mm, key.clone())) {
                            continue;
                        }
                        for &x in &sources {
                            let long = |a: usize, b: usize| {
                                self.online_since
                                    .get(&(a, b))
                                    .is_some_and(|s| s.saturating_add(settle) <= end)
                            };
                            // Between two sync members (other than the speaker) the repair
                            // has a longer bound: `sync_reaches_connected`.
                            let both_sync = x != t.speaker && self.is_sync(x) && self.is_sync(mm);
                            if !both_sync
                                && x != mm
                                && members[x].alive
                                && long(mm, x)
                                && long(x, mm)
                            {
                                violations.push(format!(
                                    "n{mm} never showed #{m} {:?} from n{} although it has been connected since t={:.1}s to n{x}, who {}",
                                    String::from_utf8_lossy(&t.text),
                                    t.speaker,
                                    secs(self.online_since.get(&(mm, x)).copied().unwrap_or(0)),
                                    if x == t.speaker { "said it" } else { "received it directly" }
                                ));
                                break;
                            }
                        }
                    }
                }
            }
            if t.forged_by.is_none()
                && self.sc.check.sync_reaches_connected
                && self.is_sync(t.speaker)
            {
                let bound = self
                    .sc
                    .core
                    .sync_interval
                    .map_or(120_000, ms)
                    .saturating_mul(3)
                    .saturating_add(30_000);
                let cutoff = end.saturating_sub(bound);
                let holders: Vec<usize> = (0..n)
                    .filter(|x| self.disp[*x].get(&m).is_some_and(|d| d.shown_at <= cutoff))
                    .chain(std::iter::once(t.speaker).filter(|_| t.at <= cutoff))
                    .collect();
                for &mm in &missing {
                    if !members[mm].alive || members[mm].state != "Joined" || !self.is_sync(mm) {
                        continue;
                    }
                    let since = |a: usize, b: usize| self.online_since.get(&(a, b)).copied();
                    let long = |x: usize| matches!((since(mm, x), since(x, mm)), (Some(a), Some(b)) if a.max(b) <= cutoff);
                    if let Some(&x) = holders
                        .iter()
                        .find(|x| **x != mm && members[**x].alive && self.is_sync(**x) && long(**x))
                    {
                        violations.push(format!(
                            "n{mm} never got #{m} {:?} from n{} although it has been connected to n{x}, who holds it, for over {:.0} s",
                            String::from_utf8_lossy(&t.text),
                            t.speaker,
                            secs(bound)
                        ));
                    }
                }
            }
            reports.push(MessageReport {
                index: m,
                speaker: t.speaker,
                text: String::from_utf8_lossy(&t.text).into_owned(),
                at: secs(t.at),
                forged_by: t.forged_by,
                delivery_ratio: if t.expected.is_empty() {
                    1.0
                } else {
                    delivered as f64 / t.expected.len() as f64
                },
                expected: t.expected.clone(),
                delivered,
                time_to_last_delivery: last.map(secs),
                missing,
                displays,
                lines: lines as f64 / repeats,
                bytes: bytes as f64 / repeats,
            });
        }
        // No node stores two messages with the same speaker and sequence number.
        for i in 0..n {
            let mut seen = BTreeSet::new();
            for msg in &self.slots[i].store.messages {
                if let Some(s) = msg.sync {
                    if !seen.insert((msg.sender.clone(), s.seq)) {
                        violations.push(format!(
                            "n{i} stored two messages with sequence number {} of {}",
                            s.seq, msg.sender
                        ));
                    }
                }
            }
        }
        self.violations.extend(violations);
        totals.outbox_pending = members.iter().map(|m| m.outbox).sum();
        totals.delivery_ratio = if totals.pairs_expected == 0 {
            1.0
        } else {
            totals.pairs_displayed as f64 / totals.pairs_expected as f64
        };
        if totals.lost_lines > 0 {
            self.notes.push(format!(
                "{} line(s) were lost in flight, {} of them group messages or echoes (a connection broke under them, or the reader had closed it)",
                totals.lost_lines, totals.lost_group_lines
            ));
        }
        let reconnect = self.sc.check.reconnect_within.map(|_| {
            let mut t = self.reconnect_times.clone();
            t.sort_unstable();
            let pct = |p: usize| {
                t.get(t.len().saturating_sub(1) * p / 100)
                    .map_or(0.0, |v| secs(*v))
            };
            crate::report::ReconnectStats {
                episodes: t.len(),
                median: pct(50),
                p95: pct(95),
                max: pct(100),
            }
        });
        Report {
            scenario: self.sc.name.clone(),
            seed: self.seed,
            nodes: n,
            mode: self.sc.group.mode.name().to_owned(),
            gid: gid.map(|g| g.as_str().to_owned()),
            duration: secs(end),
            messages: reports,
            totals,
            members,
            violations: self.violations,
            notes: self.notes,
            reconnect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_valid_and_distinct() {
        let ids: BTreeSet<OnionId> = (0..2000).map(node_id).collect();
        assert_eq!(ids.len(), 2000);
        assert_eq!(node_id(0).as_str(), "nodeaaaaaaaaaaaa");
        assert_eq!(node_id(33).as_str(), "nodeabbaaaaaaaaa");
    }
}
