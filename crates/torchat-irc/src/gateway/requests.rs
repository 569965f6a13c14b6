//! Contact requests from strangers: announced in `&torchat` (with what the stranger wrote,
//! made safe for IRC), listed by `requests`, answered with `accept <id>`, `ignore <id>` or
//! `block <id>`.

use super::*;

/// Held messages quoted per request in `requests` (the newest; the node holds a few dozen).
const QUOTED: usize = 5;

impl Gateway {
    /// `requests`, `accept <id>` (not a channel), `ignore <id>`.
    pub(super) fn request_command(&mut self, cmd: &str, arg: Option<String>, to: ReplyTo) {
        let ctl = |op: Op| Kind::Ctl { reply: to, op };
        if cmd == "requests" {
            return self.call(ctl(Op::Requests), Command::Requests);
        }
        let Some(who) = arg else {
            return self.reply(to, &format!("usage: {cmd} <onion id>"));
        };
        let Some(id) = self.resolve(&who) else {
            return self.reply(to, &format!("{who} is not an onion id; see requests"));
        };
        let (what, c) = if cmd == "accept" {
            (
                format!("accepted {id}: a buddy now"),
                Command::RequestAccept {
                    id: id.clone(),
                    alias: None,
                },
            )
        } else {
            (
                format!("ignored the request from {id}"),
                Command::RequestIgnore { id },
            )
        };
        self.call(ctl(Op::RequestDone { what }), c);
    }

    /// The answer to `requests`.
    pub(super) fn show_requests(&mut self, to: ReplyTo, v: Value) {
        let list: Vec<torchat_api::ContactRequest> = serde_json::from_value(v).unwrap_or_default();
        if list.is_empty() {
            return self.reply(to, "no contact requests");
        }
        for r in list {
            let what = if r.added_me {
                "added you"
            } else {
                "wrote to you"
            };
            let dropped = if r.dropped > 0 {
                format!(", {} messages dropped", r.dropped)
            } else {
                String::new()
            };
            self.reply(
                to,
                &format!(
                    "request from {} ({what}, {} messages held{dropped}): accept {0} | ignore {0} | block {0}",
                    r.id,
                    r.messages.len()
                ),
            );
            let skip = r.messages.len().saturating_sub(QUOTED);
            for m in r.messages.iter().skip(skip) {
                self.reply(to, &format!("  {}: {}", civil(m.at), one_line(&m.text)));
            }
        }
    }

    /// `request`, `request_message`, `request_closed` events.
    pub(super) fn on_request_event(&mut self, e: Event) {
        match e {
            Event::Request {
                id,
                added_me: true,
                messages: 0,
                ..
            } => self.control_notice(&format!(
                "contact request: {id} added you; accept {id} | ignore {id} | block {id}"
            )),
            Event::RequestMessage { from, message } => self.control_notice(&format!(
                "contact request from {from}: {} (accept {from} | ignore {from} | block {from})",
                excerpt(&one_line(&message.text))
            )),
            Event::RequestClosed { id, outcome } if outcome == "evicted" => self.control_notice(
                &format!("the contact request from {id} was dropped to make room for newer ones"),
            ),
            _ => {}
        }
    }
}

/// A stranger's text on one IRC line: line breaks become spaces (IRC-unsafe and control
/// characters are replaced when the line is built).
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
