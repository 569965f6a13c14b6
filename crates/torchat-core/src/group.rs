//! Group chat (filled in by the group chat work).

use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::time::Timestamp;

impl Node {
    pub(crate) fn handle_group_packet(&mut self, _from: &OnionId, _p: Packet, _now: Timestamp) {}
    pub(crate) fn on_buddy_online(&mut self, _id: &OnionId, _now: Timestamp) {}
    pub(crate) fn group_timeout(&self) -> Option<Timestamp> {
        None
    }
    pub(crate) fn handle_group_timeout(&mut self, _now: Timestamp) {}
}
