//! On an authenticated control connection: wait for bootstrap, add our onion service, wait for
//! its descriptors, announce `Ready`, then watch the connection until it closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant};
use torchat_wire::OnionId;
use zeroize::Zeroizing;

use super::{Ctx, Fail};
use crate::control::{keywords, ControlConn, Reply};
use crate::{keys, Error, TransportEvent, TORCHAT_PORT};

/// How often bootstrap progress is also polled (events are the main source).
const POLL: Duration = Duration::from_secs(5);
/// How often the bootstrap problem is repeated while tor stays stuck.
const REPEAT_WARN: Duration = Duration::from_secs(60);
/// Quiet spell after the last descriptor upload starts before we call the service published.
const UPLOAD_QUIET: Duration = Duration::from_millis(1500);
/// After this long publishing, report a problem (and keep waiting if nothing was uploaded).
const PUBLISH_WARN: Duration = Duration::from_secs(120);

pub(super) async fn run(ctx: &Ctx, ctl: &mut ControlConn, socks: SocketAddr) -> Fail {
    match run_inner(ctx, ctl, socks).await {
        Ok(()) => Fail::Retry(Error::Control("the node stopped listening".into())),
        Err(f) => f,
    }
}

async fn run_inner(ctx: &Ctx, ctl: &mut ControlConn, socks: SocketAddr) -> Result<(), Fail> {
    ctl.command_ok("SETEVENTS STATUS_CLIENT HS_DESC").await?;
    bootstrap(ctx, ctl).await?;
    add_onion(ctx, ctl).await?;
    wait_published(ctx, ctl).await?;
    ctx.shared.set_socks(Some(socks));
    tracing::debug!(id = ctx.own.short(), %socks, "onion service published");
    if !ctx
        .emit(TransportEvent::Ready {
            id: ctx.own.clone(),
        })
        .await
    {
        return Ok(());
    }
    // Keep the control connection (and with it the service) open; drain events.
    while let Some(ev) = ctl.next_event().await {
        if ev.first().starts_with("STATUS_CLIENT WARN") {
            tracing::debug!(event = ev.first(), "tor warns");
        }
    }
    Err(Fail::Retry(Error::Control(
        "lost the control connection to tor".into(),
    )))
}

/// Bootstrap state from `GETINFO status/bootstrap-phase` or a `STATUS_CLIENT` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Bootstrap {
    pub percent: u8,
    pub summary: String,
    pub warning: Option<String>,
}

/// Parses `... BOOTSTRAP PROGRESS=n TAG=t SUMMARY="s" [WARNING="w" ...]`.
pub(super) fn parse_bootstrap(text: &str) -> Option<Bootstrap> {
    let words = keywords(text);
    if !words.iter().any(|(k, v)| k.is_none() && v == "BOOTSTRAP") {
        return None;
    }
    let get = |key: &str| {
        words
            .iter()
            .find_map(|(k, v)| (k.as_deref() == Some(key)).then(|| v.clone()))
    };
    let percent = get("PROGRESS")?.parse::<u8>().ok()?.min(100);
    Some(Bootstrap {
        percent,
        summary: get("SUMMARY").unwrap_or_default(),
        warning: get("WARNING"),
    })
}

async fn bootstrap(ctx: &Ctx, ctl: &mut ControlConn) -> Result<(), Fail> {
    let started = Instant::now();
    let mut next_warn = started + ctx.warn_after;
    let mut shown: Option<(u8, String)> = None;
    let mut last = Bootstrap {
        percent: 0,
        summary: "starting".into(),
        warning: None,
    };
    let mut warning: Option<String> = None;
    loop {
        let phase = ctl.getinfo("status/bootstrap-phase").await?;
        let mut update = parse_bootstrap(&phase);
        let poll_at = Instant::now() + POLL;
        loop {
            if let Some(b) = update.take() {
                if b.warning.is_some() {
                    warning.clone_from(&b.warning);
                }
                let key = (b.percent, b.summary.clone());
                if shown.as_ref() != Some(&key) {
                    shown = Some(key);
                    let ev = TransportEvent::Progress {
                        percent: b.percent,
                        summary: b.summary.clone(),
                    };
                    if !ctx.emit(ev).await {
                        return Err(Fail::Retry(Error::Control("the node is gone".into())));
                    }
                }
                if b.percent >= 100 {
                    return Ok(());
                }
                last = b;
            }
            tokio::select! {
                ev = ctl.next_event() => {
                    let ev = ev.ok_or_else(|| Error::Control("tor closed the control connection".into()))?;
                    if ev.first().starts_with("STATUS_CLIENT") {
                        update = parse_bootstrap(ev.first());
                    }
                }
                _ = sleep_until(next_warn) => {
                    let secs = started.elapsed().as_secs();
                    let mut message = format!(
                        "Tor has not connected to the Tor network after {secs} s \
                         (at {}%: {})", last.percent, last.summary
                    );
                    if let Some(w) = &warning {
                        message.push_str(&format!("; tor says: {w}"));
                    }
                    tracing::debug!(%message, "bootstrap is slow");
                    if !ctx.emit(TransportEvent::Problem { message, hint: ctx.hint() }).await {
                        return Err(Fail::Retry(Error::Control("the node is gone".into())));
                    }
                    next_warn = Instant::now() + REPEAT_WARN;
                }
                _ = sleep_until(poll_at) => break,
            }
        }
    }
}

/// Onion-service DoS defences we ask tor for: at most 4 streams per rendezvous circuit (more
/// closes the circuit; TorChat uses one), and proof-of-work for introductions (tor ≥ 0.4.8
/// with its `pow` module: clients then pay in work when the service is flooded, effort 0
/// otherwise). Intro-point rate limiting (`HiddenServiceEnableIntroDoSDefense`) has no
/// `ADD_ONION` keyword; tor applies the consensus defaults.
const DEFENCES: &str = "MaxStreams=4 Flags=MaxStreamsCloseCircuit";
const POW: &str = "PoWDefensesEnabled=1";

async fn add_onion(ctx: &Ctx, ctl: &mut ControlConn) -> Result<(), Fail> {
    let blob = keys::add_onion_key_blob(&ctx.seed);
    let command = |pow: bool| {
        Zeroizing::new(format!(
            "ADD_ONION {} {DEFENCES}{}{} Port={TORCHAT_PORT},{}",
            *blob,
            if pow { " " } else { "" },
            if pow { POW } else { "" },
            ctx.target
        ))
    };
    let mut reply = ctl.command(&command(true)).await?;
    if reply.code != 250 && !reply.first().contains("collision") {
        // An older tor, or one built without proof-of-work: without it.
        tracing::info!(
            "tor refused proof-of-work for our onion service ({} {}); adding it without",
            reply.code,
            reply.first()
        );
        reply = ctl.command(&command(false)).await?;
    }
    if reply.code != 250 {
        let mut msg = format!(
            "tor refused our onion service: {} {}",
            reply.code,
            reply.first()
        );
        if reply.first().contains("collision") {
            msg.push_str(" (is another torchat with this identity using the same tor?)");
        }
        return Err(Fail::Retry(Error::Control(msg)));
    }
    let sid = reply
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("ServiceID="))
        .ok_or_else(|| Error::Control("ADD_ONION: no ServiceID in tor's reply".into()))?;
    let got = OnionId::parse(sid).map_err(|e| {
        Fail::Fatal(Error::Control(format!(
            "ADD_ONION: tor returned a bad service id: {e}"
        )))
    })?;
    if got != ctx.own {
        return Err(Fail::Fatal(Error::Control(format!(
            "tor published our key as {got}.onion, but our identity is {}.onion: the key was \
             not passed to tor correctly",
            ctx.own
        ))));
    }
    tracing::debug!(id = ctx.own.short(), "onion service added");
    Ok(())
}

/// Counts descriptor uploads for one service.
#[derive(Debug, Default)]
pub(super) struct Uploads {
    pending: HashMap<String, u32>,
    pub uploaded: u32,
    pub failed: u32,
}

impl Uploads {
    /// Feeds one `HS_DESC` event text; true if it concerned `own` (an upload started or ended).
    pub fn feed(&mut self, text: &str, own: &OnionId) -> bool {
        let mut words = text.split(' ');
        if words.next() != Some("HS_DESC") {
            return false;
        }
        let (Some(action), Some(addr), Some(_auth), Some(hsdir)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return false;
        };
        if !addr.eq_ignore_ascii_case(own.as_str()) {
            return false;
        }
        // "$FPR~nick" and "$FPR" name the same HSDir.
        let dir = hsdir.split('~').next().unwrap_or(hsdir).to_string();
        match action {
            "UPLOAD" => *self.pending.entry(dir).or_default() += 1,
            "UPLOADED" | "FAILED" => {
                if let Some(n) = self.pending.get_mut(&dir) {
                    *n = n.saturating_sub(1);
                }
                if action == "UPLOADED" {
                    self.uploaded += 1;
                } else {
                    self.failed += 1;
                }
            }
            _ => return false,
        }
        true
    }

    /// True when nothing is in flight and at least one upload succeeded.
    pub fn settled(&self) -> bool {
        self.uploaded > 0 && self.pending.values().all(|&n| n == 0)
    }
}

async fn wait_published(ctx: &Ctx, ctl: &mut ControlConn) -> Result<(), Fail> {
    let summary = "publishing our onion service".to_string();
    if !ctx
        .emit(TransportEvent::Progress {
            percent: 100,
            summary,
        })
        .await
    {
        return Err(Fail::Retry(Error::Control("the node is gone".into())));
    }
    let started = Instant::now();
    let mut warn_at = started + PUBLISH_WARN;
    let mut last_activity = started;
    let mut uploads = Uploads::default();
    loop {
        tokio::select! {
            ev = ctl.next_event() => {
                let ev: Reply = ev.ok_or_else(|| Error::Control("tor closed the control connection".into()))?;
                if uploads.feed(ev.first(), &ctx.own) {
                    last_activity = Instant::now();
                }
            }
            _ = sleep(Duration::from_millis(250)) => {}
        }
        if uploads.settled() && last_activity.elapsed() >= UPLOAD_QUIET {
            tracing::debug!(
                uploaded = uploads.uploaded,
                failed = uploads.failed,
                secs = started.elapsed().as_secs_f32(),
                "descriptors uploaded"
            );
            return Ok(());
        }
        if Instant::now() >= warn_at {
            if uploads.uploaded > 0 {
                return Ok(()); // some HSDirs have it; connects retry the rest
            }
            let message = format!(
                "Tor has not published our onion service after {} s ({} uploads failed)",
                started.elapsed().as_secs(),
                uploads.failed
            );
            if !ctx
                .emit(TransportEvent::Problem {
                    message,
                    hint: ctx.hint(),
                })
                .await
            {
                return Err(Fail::Retry(Error::Control("the node is gone".into())));
            }
            warn_at = Instant::now() + REPEAT_WARN;
        }
    }
}

/// The SOCKS listener from `GETINFO net/listeners/socks` (`"127.0.0.1:9050" ...`).
pub(super) fn parse_listener(value: &str) -> Option<SocketAddr> {
    keywords(value)
        .into_iter()
        .find_map(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lines_parse() {
        let b = parse_bootstrap(
            r#"NOTICE BOOTSTRAP PROGRESS=14 TAG=handshake SUMMARY="Handshaking with a relay""#,
        )
        .unwrap();
        assert_eq!(
            (b.percent, b.summary.as_str(), b.warning),
            (14, "Handshaking with a relay", None)
        );
        let b = parse_bootstrap(
            r#"STATUS_CLIENT WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting" WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=1 RECOMMENDATION=ignore"#,
        )
        .unwrap();
        assert_eq!(b.warning.as_deref(), Some("Connection refused"));
        assert!(parse_bootstrap("STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED").is_none());
        assert!(parse_bootstrap("NOTICE BOOTSTRAP PROGRESS=abc").is_none());
    }

    #[test]
    fn uploads_settle_per_hsdir() {
        let own = crate::keys::onion_id(&[7; 32]);
        let a = own.as_str();
        let mut u = Uploads::default();
        assert!(!u.settled());
        assert!(u.feed(
            &format!("HS_DESC UPLOAD {a} UNKNOWN $AA~r1 descid1 HSDIR_INDEX=x"),
            &own
        ));
        assert!(u.feed(&format!("HS_DESC UPLOAD {a} UNKNOWN $AA~r1 descid2"), &own));
        assert!(u.feed(&format!("HS_DESC UPLOAD {a} UNKNOWN $BB descid1"), &own));
        assert!(!u.feed("HS_DESC UPLOAD otherid UNKNOWN $BB descid1", &own));
        assert!(u.feed(&format!("HS_DESC UPLOADED {a} UNKNOWN $AA~r1"), &own));
        assert!(!u.settled());
        assert!(u.feed(
            &format!("HS_DESC FAILED {a} UNKNOWN $BB REASON=UPLOAD_REJECTED"),
            &own
        ));
        assert!(!u.settled());
        assert!(u.feed(&format!("HS_DESC UPLOADED {a} UNKNOWN $AA"), &own));
        assert!(u.settled());
        assert_eq!((u.uploaded, u.failed), (2, 1));
        assert!(!u.feed("STATUS_CLIENT NOTICE X", &own));
    }

    #[test]
    fn listeners_parse() {
        assert_eq!(
            parse_listener(r#""127.0.0.1:9050" "[::1]:9050""#),
            Some("127.0.0.1:9050".parse().unwrap())
        );
        assert_eq!(parse_listener(""), None);
    }
}
