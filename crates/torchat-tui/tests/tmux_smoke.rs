//! Smoke test of the real thing: two `torchat daemon`s (direct transport on loopback, legacy
//! ids) and the terminal UI (`examples/tui.rs`) attached to one of them in tmux at 80×24,
//! typed at with `send-keys` and read with `capture-pane`.
//!
//! It runs `target/<profile>/torchat` and `target/<profile>/examples/tui` (both built by
//! `cargo test --workspace`); when either is missing or older than the sources, the test kit
//! builds it first.
//! Without tmux it prints `SKIP` and passes, unless `TORCHAT_REQUIRE_TMUX=1`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use torchat_testkit::daemon::workspace_binary;
use torchat_testkit::{direct_config, free_port, torchat_bin, wait_until, Client, Daemon};

const ALICE: &str = "aliceaaaaaaaaaaa";
const BOB: &str = "bobaaaaaaaaaaaaa";

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A tmux server of our own (its own socket), with one 80×24 session.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "smoke",
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "smoke"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "smoke"];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Types text literally, then Enter.
    fn line(&self, text: &str) {
        self.run(&["send-keys", "-t", "smoke", "-l", text]);
        self.keys(&["Enter"]);
    }

    fn wait_for(&self, what: &str, daemons: &[&Daemon], f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = daemons.iter().map(|d| d.log()).collect();
                panic!(
                    "timed out waiting for {what}; screen:\n{s}\nlogs:\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn tui_in_tmux_adds_a_buddy_chats_and_makes_a_group() {
    if !have_tmux() {
        assert!(
            std::env::var("TORCHAT_REQUIRE_TMUX").as_deref() != Ok("1"),
            "tmux is required (TORCHAT_REQUIRE_TMUX=1) but missing"
        );
        println!("SKIP: tmux not installed (apt-get install tmux)");
        return;
    }
    let torchat = torchat_bin();
    let tui = workspace_binary("examples/tui", &["-p", "torchat-tui", "--example", "tui"]);
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let alice = Daemon::start_with(
        &torchat,
        root.path(),
        "alice",
        &direct_config("alice", pa, &[("bob", pb)], &[]),
    );
    let bob = Daemon::start_with(
        &torchat,
        root.path(),
        "bob",
        &direct_config("bob", pb, &[("alice", pa)], &[]),
    );
    let ds = [&alice, &bob];
    let mut api_b = Client::connect(&bob.socket());
    api_b.ok(json!({"cmd": "add", "id": ALICE, "alias": "alice"}));

    // Keep the pane open after the UI exits, to read what it printed.
    let cmd = format!(
        "{} {}; echo UI-EXITED $?; sleep 600",
        tui.display(),
        alice.socket().display()
    );
    let tmux = Tmux::start(root.path(), &cmd);
    let s = tmux.wait_for("the UI with our id", &ds, |s| s.contains(ALICE));
    assert!(s.contains("direct ready"), "{s}");
    assert_eq!(s.lines().count(), 24, "{s}");

    // Add bob; he comes online.
    tmux.line(&format!("/add {BOB} bob"));
    tmux.wait_for("bob online", &ds, |s| s.contains("● bob"));

    // 1:1 both ways.
    tmux.keys(&["Tab"]);
    tmux.wait_for("bob's conversation", &ds, |s| s.contains("bob · available"));
    tmux.line("hello bob from the tui");
    tmux.wait_for("our message, sent", &ds, |s| {
        s.contains("you: hello bob from the tui · sent")
    });
    wait_until(Duration::from_secs(20), "bob has the message", || {
        let h = api_b.ok(json!({"cmd": "history", "with": ALICE}));
        h.as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == json!("hello bob from the tui"))
    });
    api_b.ok(json!({"cmd": "send", "to": ALICE, "text": "hi alice, bob here"}));
    tmux.wait_for("bob's answer", &ds, |s| {
        s.contains("bob: hi alice, bob here")
    });

    // A group: create, invite bob; he accepts and speaks.
    tmux.line("/group");
    tmux.wait_for("the new group", &ds, |s| s.contains("(only you)"));
    tmux.line("/invite bob");
    let mut gid = String::new();
    wait_until(Duration::from_secs(20), "bob's invite", || {
        let groups = api_b.ok(json!({"cmd": "groups"}));
        match groups.as_array().unwrap().first() {
            Some(g) if g["state"] == json!("invited") => {
                gid = g["gid"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    });
    api_b.ok(json!({"cmd": "group_accept", "gid": gid}));
    tmux.wait_for("bob joined", &ds, |s| s.contains("bob joined"));
    wait_until(Duration::from_secs(20), "bob has joined", || {
        api_b.ok(json!({"cmd": "group_members", "gid": gid}))["state"] == json!("joined")
    });
    api_b.ok(json!({"cmd": "group_say", "gid": gid, "text": "hello group"}));
    let s = tmux.wait_for("bob's group message, tagged", &ds, |s| {
        s.contains("bob: hello group (Direct)")
    });
    assert!(s.contains("members: you, ● bob"), "{s}");
    tmux.line("hi bob, in the group");
    tmux.wait_for("our group message delivered", &ds, |s| {
        s.contains("you: hi bob, in the group · delivered 1 of 1")
    });

    // Who vouched for bob's message: select it, c.
    tmux.keys(&["Escape"]);
    tmux.keys(&["c"]);
    tmux.wait_for("the claims popup", &ds, |s| s.contains("Who vouched"));
    tmux.keys(&["Escape"]);

    // Our id alone on the screen.
    tmux.keys(&["F2"]);
    tmux.wait_for("the id screen", &ds, |s| {
        s.lines().any(|l| l.trim() == ALICE)
    });
    tmux.keys(&["Escape"]);

    // Quit: the id is printed for copying.
    tmux.keys(&["C-c"]);
    let s = tmux.wait_for("the UI to exit", &ds, |s| s.contains("UI-EXITED"));
    assert!(s.contains(&format!("your torchat id: {ALICE}")), "{s}");
    assert!(s.contains("UI-EXITED 0"), "{s}");
}
