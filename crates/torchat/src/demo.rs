//! `torchat demo`: four nodes on loopback (direct transport, temporary data directories), one
//! cut link, and what each member sees. Needs no network and no Tor.

use std::time::Duration;

use serde_json::Value;
use torchat_api::Command;

use crate::config::{Config, TransportKind};
use crate::daemon;
use torchat_client::Client;

const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

struct Member {
    name: &'static str,
    id: String,
    client: Client,
    started: daemon::Started,
    _dir: tempfile::TempDir,
}

async fn call(c: &mut Client, cmd: Command) -> Result<Value, String> {
    c.call(cmd).await.map_err(|e| e.to_string())
}

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn wait_for<F>(
    members: &mut [Member],
    secs: u64,
    what: &str,
    mut check: F,
) -> Result<(), String>
where
    F: FnMut(&[Value]) -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut states = vec![];
        for m in members.iter_mut() {
            states.push(call(&mut m.client, Command::Groups).await?);
            let b = call(&mut m.client, Command::Buddies).await?;
            states.push(b);
        }
        if check(&states) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let detail: Vec<String> = states.iter().map(|v| v.to_string()).collect();
            return Err(format!(
                "demo: timed out waiting for {what}; state: {}",
                detail.join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_online(states: &[Value], who: usize) -> bool {
    states[2 * who + 1].as_array().is_some_and(|l| {
        let mut perm = l.iter().filter(|b| b["kind"] == "permanent").peekable();
        perm.peek().is_some() && perm.all(|b| b["presence"] == "available")
    })
}

pub(crate) async fn run() -> Result<(), String> {
    println!("torchat demo: four nodes on 127.0.0.1, direct transport (no Tor needed).\n");
    let mut members = vec![];
    for name in NAMES {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cfg = Config::default();
        cfg.transport.kind = TransportKind::Direct;
        cfg.transport.direct.listen = "127.0.0.1:0".parse().map_err(|_| "addr")?;
        cfg.profile.name = Some(name.to_owned());
        cfg.protocol.settle_window_secs = Some(3);
        let started = daemon::start(&cfg, dir.path()).await?;
        let client = Client::connect(&started.node.control_path)
            .await
            .map_err(|e| e.to_string())?;
        let id = started.node.id.to_string();
        members.push(Member {
            name,
            id,
            client,
            started,
            _dir: dir,
        });
    }
    // Tell every direct transport where the others listen.
    let addrs: Vec<(torchat_wire::OnionId, std::net::SocketAddr)> = members
        .iter()
        .filter_map(|m| {
            m.started
                .direct
                .as_ref()
                .map(|d| (m.started.node.id.clone(), d.local_addr()))
        })
        .collect();
    for m in &members {
        if let Some(d) = &m.started.direct {
            for (id, addr) in &addrs {
                d.set_route(id.clone(), *addr);
            }
        }
    }
    for m in &members {
        println!("  {:<6} is {}", m.name, m.id);
    }
    // Alice and everyone else become buddies.
    let alice_id = members[0].id.clone();
    for i in 1..4 {
        let id = members[i].id.clone();
        call(
            &mut members[0].client,
            Command::Add {
                id,
                alias: Some(NAMES[i].into()),
            },
        )
        .await?;
        call(
            &mut members[i].client,
            Command::Add {
                id: alice_id.clone(),
                alias: Some("alice".into()),
            },
        )
        .await?;
    }
    wait_for(&mut members, 30, "buddies to come online", |s| {
        (0..4).all(|i| all_online(s, i))
    })
    .await?;
    println!("\nalice creates a group and invites bob, carol and dave…");
    let gid = call(
        &mut members[0].client,
        Command::GroupCreate { modes: vec![] },
    )
    .await?["gid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for i in 1..4 {
        let id = members[i].id.clone();
        call(
            &mut members[0].client,
            Command::GroupInvite {
                gid: gid.clone(),
                id,
            },
        )
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = call(
                &mut members[i].client,
                Command::GroupAccept { gid: gid.clone() },
            )
            .await;
            if r.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err("demo: the invite did not arrive".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_for(&mut members, 60, "everyone to join", |s| {
        (0..4).all(|i| {
            s[2 * i].as_array().is_some_and(|gs| {
                gs.iter().any(|g| {
                    g["state"] == "joined" && g["members"].as_array().is_some_and(|m| m.len() == 3)
                })
            })
        })
    })
    .await?;
    println!("all four are members. Now the link between alice and dave is cut.");
    let (a_id, d_id) = (
        members[0].started.node.id.clone(),
        members[3].started.node.id.clone(),
    );
    if let Some(d) = &members[0].started.direct {
        d.set_cut(&d_id, true);
    }
    if let Some(d) = &members[3].started.direct {
        d.set_cut(&a_id, true);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\nalice says \"hello everyone\"; bob says \"hi alice\".");
    call(
        &mut members[0].client,
        Command::GroupSay {
            gid: gid.clone(),
            text: "hello everyone".into(),
        },
    )
    .await?;
    call(
        &mut members[1].client,
        Command::GroupSay {
            gid: gid.clone(),
            text: "hi alice".into(),
        },
    )
    .await?;
    // Wait for the settle window (3 s in the demo; 10 s by default) and a bit.
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("\nwhat each member sees:");
    for m in members.iter_mut() {
        println!("  {}:", m.name);
        let h = call(
            &mut m.client,
            Command::History {
                with: gid.clone(),
                limit: Some(20),
                before: None,
            },
        )
        .await?;
        for msg in h.as_array().into_iter().flatten() {
            let sender = msg["sender"].as_str().unwrap_or_default();
            let who = NAMES
                .iter()
                .zip(addrs.iter())
                .find(|(_, (id, _))| id.as_str() == sender)
                .map(|(n, _)| *n)
                .unwrap_or("?");
            println!(
                "    {:<6} {:<18} {}",
                who,
                msg["trust"].as_str().unwrap_or(""),
                msg["text"].as_str().unwrap_or("")
            );
        }
    }
    println!(
        "\ndave could not hear alice directly: bob and carol relayed her message, so dave shows"
    );
    println!("how many of the other members vouch for it — 2 of 3 — instead of (Direct). Their");
    println!("copies carried alice's signature, made with her onion key, so it is marked Signed:");
    println!("the text is proven to be hers. (Legacy clients relay without signatures; then it");
    println!("shows (2 of 3) after a short settle window.)");
    for m in members {
        m.started.node.shutdown().await;
    }
    println!("\ndemo finished; temporary data removed.");
    Ok(())
}
