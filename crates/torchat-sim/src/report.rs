//! What a run produces: per-message delivery and trust, wire totals, invariant violations.
//! Serialises to JSON deterministically (same scenario and seed: byte-identical output).

use std::fmt::Write as _;

use serde::Serialize;
use torchat_core::Trust;

/// One member's view of one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Display {
    /// The member.
    pub node: usize,
    /// When it was shown (seconds of virtual time).
    pub shown_at: f64,
    /// Trust when it was shown.
    pub first: Trust,
    /// Trust at the end of the run.
    pub last: Trust,
    /// Label of `last`.
    pub label: String,
    /// Members vouching for it at the end (node numbers), as the last update said.
    pub claimants: Vec<usize>,
    /// Trust updates after it was shown.
    pub updates: u32,
}

/// One message (said, or forged by a dishonest member).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageReport {
    /// Index in the run (order of saying).
    pub index: usize,
    /// The speaker (the claimed speaker for a forgery).
    pub speaker: usize,
    /// The text.
    pub text: String,
    /// When it was said (or forged), seconds.
    pub at: f64,
    /// For a forgery: the member who forged it.
    pub forged_by: Option<usize>,
    /// Members it should reach (the speaker's member list when it was said).
    pub expected: Vec<usize>,
    /// How many of `expected` showed it.
    pub delivered: usize,
    /// `delivered / expected` (1 when nothing was expected).
    pub delivery_ratio: f64,
    /// Seconds from saying to the last expected member showing it.
    pub time_to_last_delivery: Option<f64>,
    /// Expected members that never showed it.
    pub missing: Vec<usize>,
    /// Every member that showed it, by node.
    pub displays: Vec<Display>,
    /// Full copies written for it (speaker's, echoes, relayed or pulled sync copies; lines of
    /// repeated texts are split evenly between the repeats).
    pub lines: f64,
    /// Bytes of those lines (with the LF).
    pub bytes: f64,
}

/// Totals over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// (member, message) pairs expected, over said messages.
    pub pairs_expected: usize,
    /// Of those, shown.
    pub pairs_displayed: usize,
    /// `pairs_displayed / pairs_expected`.
    pub delivery_ratio: f64,
    /// Every line written on the wire.
    pub lines: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Full copies written by their speaker: `groupchat_message`, `groupchat_signed_message`,
    /// `groupchat_sync_message` from the speaker.
    pub message_lines: u64,
    /// Full copies written by other members: `groupchat_echoed_message` (forged ones
    /// included), `groupchat_signed_echo`, `groupchat_sync_message` relayed or pulled.
    pub echo_lines: u64,
    /// Bytes of both kinds (the payload).
    pub group_bytes: u64,
    /// Control lines of `torchat_sync`: acks, digests, wants, ends, tells.
    pub digest_lines: u64,
    /// Their bytes.
    pub digest_bytes: u64,
    /// Lines lost in flight (a link broke, or the receiver had closed the connection).
    pub lost_lines: u64,
    /// Of those, `groupchat_message` and `groupchat_echoed_message` lines.
    pub lost_group_lines: u64,
    /// Group packets still waiting in live nodes' outboxes at the end.
    pub outbox_pending: usize,
    /// Connections established.
    pub connections: u64,
    /// Connection attempts that failed.
    pub failed_connects: u64,
    /// Records persisted by all nodes.
    pub records: u64,
    /// Simulator events processed.
    pub events: u64,
}

/// A member's state at the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberState {
    /// The node.
    pub node: usize,
    /// Running at the end.
    pub alive: bool,
    /// Group state (`Joined`, `Left`, …) or `none`.
    pub state: String,
    /// Members ∪ itself, as node numbers.
    pub members: Vec<usize>,
    /// Group packets waiting in its outbox.
    pub outbox: usize,
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Group mode.
    pub mode: String,
    /// The group id.
    pub gid: Option<String>,
    /// Run length, seconds.
    pub duration: f64,
    /// Per message.
    pub messages: Vec<MessageReport>,
    /// Totals.
    pub totals: Totals,
    /// Each node's group state at the end.
    pub members: Vec<MemberState>,
    /// Invariant violations (empty = pass).
    pub violations: Vec<String>,
    /// Things worth knowing that are not violations (refused commands, lost lines).
    pub notes: Vec<String>,
    /// How long pairs took to see each other online again once both were running with their
    /// link up (when the scenario checks `reconnect_within`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<ReconnectStats>,
}

/// Reconnection times of a run, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconnectStats {
    /// Episodes (a pair became able to connect and later saw each other online).
    pub episodes: usize,
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Longest.
    pub max: f64,
}

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The message with this text (the first one), for tests.
    pub fn message(&self, text: &str) -> Option<&MessageReport> {
        self.messages.iter().find(|m| m.text == text)
    }

    /// Every message with this text.
    pub fn messages_with(&self, text: &str) -> Vec<&MessageReport> {
        self.messages.iter().filter(|m| m.text == text).collect()
    }

    /// A human-readable summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let t = &self.totals;
        let _ = writeln!(
            s,
            "scenario {} seed {}: {} nodes, mode {}, {:.0} s",
            self.scenario, self.seed, self.nodes, self.mode, self.duration
        );
        for m in &self.messages {
            let who = match m.forged_by {
                Some(r) => format!("n{} (forged by n{r})", m.speaker),
                None => format!("n{}", m.speaker),
            };
            let _ = writeln!(
                s,
                "  #{} {} at {:.1}s {:?}: {}/{} delivered, last after {}, {:.0} lines, {:.0} bytes",
                m.index,
                who,
                m.at,
                m.text,
                m.delivered,
                m.expected.len(),
                m.time_to_last_delivery
                    .map_or_else(|| "-".to_owned(), |d| format!("{d:.1}s")),
                m.lines,
                m.bytes
            );
            let mut labels: Vec<(String, Vec<usize>)> = Vec::new();
            for d in &m.displays {
                match labels.iter_mut().find(|(l, _)| *l == d.label) {
                    Some((_, v)) => v.push(d.node),
                    None => labels.push((d.label.clone(), vec![d.node])),
                }
            }
            for (l, nodes) in labels {
                let _ = writeln!(s, "      {l:<24} {}", node_list(&nodes));
            }
            if !m.missing.is_empty() {
                let _ = writeln!(s, "      {:<24} {}", "missing", node_list(&m.missing));
            }
        }
        let _ = writeln!(
            s,
            "  delivery {}/{} = {:.3}; lines {} ({} bytes), copies {} + {} relayed ({} bytes), sync control {} ({} bytes), lost lines {}",
            t.pairs_displayed,
            t.pairs_expected,
            t.delivery_ratio,
            t.lines,
            t.bytes,
            t.message_lines,
            t.echo_lines,
            t.group_bytes,
            t.digest_lines,
            t.digest_bytes,
            t.lost_lines
        );
        let _ = writeln!(
            s,
            "  connections {} (failed attempts {}), records {}, events {}",
            t.connections, t.failed_connects, t.records, t.events
        );
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        if let Some(r) = &self.reconnect {
            let _ = writeln!(
                s,
                "  reconnections: {} — median {:.1} s, p95 {:.1} s, max {:.1} s",
                r.episodes, r.median, r.p95, r.max
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(s, "  invariants: ok");
        } else {
            for v in &self.violations {
                let _ = writeln!(s, "  VIOLATION: {v}");
            }
        }
        s
    }
}

fn node_list(v: &[usize]) -> String {
    v.iter()
        .map(|n| format!("n{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}
