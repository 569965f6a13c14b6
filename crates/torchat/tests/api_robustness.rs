//! Bad requests on the control socket get a clear error reply; the connection stays usable and
//! the node does not crash.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};
use torchat_testkit::{direct_config, free_port, Daemon};

fn reply(rd: &mut BufReader<UnixStream>) -> Value {
    let mut l = String::new();
    rd.read_line(&mut l).unwrap();
    serde_json::from_str(&l).unwrap()
}

#[test]
fn bad_requests_get_clear_errors_and_the_connection_survives() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", free_port(), &[], &[]),
    );
    let s = UnixStream::connect(d.dir.join("control.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut wr = s;
    let cases: Vec<(Vec<u8>, &str, u64)> = vec![
        (b"this is not json\n".to_vec(), "bad_request", 0),
        (
            b"{\"cmd\":\"no_such_command\"}\n".to_vec(),
            "bad_request",
            0,
        ),
        (b"\xff\xfe\x00 binary\n".to_vec(), "bad_request", 0),
        (
            b"{\"req\":5,\"cmd\":\"add\",\"id\":\"short\"}\n".to_vec(),
            "bad_id",
            5,
        ),
        (
            b"{\"req\":6,\"cmd\":\"send\",\"to\":\"bobbbbbbbbbbbbbb\",\"text\":\"x\"}\n".to_vec(),
            "not_a_buddy",
            6,
        ),
        (
            b"{\"req\":7,\"cmd\":\"group_say\",\"gid\":\"nope\",\"text\":\"x\"}\n".to_vec(),
            "no_such_group",
            7,
        ),
        (
            b"{\"req\":8,\"cmd\":\"set_status\",\"status\":\"dancing\"}\n".to_vec(),
            "bad_request",
            8,
        ),
        (
            b"{\"req\":9,\"cmd\":\"claims\",\"msg\":\"zz\"}\n".to_vec(),
            "bad_request",
            9,
        ),
    ];
    for (input, code, req) in cases {
        wr.write_all(&input).unwrap();
        let r = reply(&mut rd);
        assert_eq!(r["ok"], json!(false), "{r}");
        assert_eq!(
            r["error"]["code"],
            json!(code),
            "{}: {r}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(r["req"], json!(req));
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
    }
    // A line far over the limit: answered, skipped, and the connection goes on.
    let mut big = vec![b'x'; 200 * 1024];
    big.push(b'\n');
    wr.write_all(&big).unwrap();
    assert_eq!(reply(&mut rd)["error"]["code"], json!("too_long"));
    wr.write_all(b"{\"req\":10,\"cmd\":\"info\"}\n").unwrap();
    let r = reply(&mut rd);
    assert_eq!(
        (r["req"].clone(), r["ok"].clone()),
        (json!(10), json!(true))
    );
    // Many clients at once, some of them vanishing mid-line.
    for _ in 0..100 {
        let mut s = UnixStream::connect(d.dir.join("control.sock")).unwrap();
        let _ = s.write_all(b"{\"cmd\":\"inf");
    }
    let mut c = d.client();
    assert_eq!(c.ok(json!({"cmd": "info"}))["api_version"], json!(1));
    // A second node on the same data directory is refused (one store, one identity).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_torchat"))
        .arg("--data-dir")
        .arg(&d.dir)
        .arg("--config")
        .arg(&d.config)
        .arg("daemon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert_eq!(
        d.client().ok(json!({"cmd": "info"}))["api_version"],
        json!(1)
    );
}

/// Issue 12, findings 5 and 6: the client over the cap is told and closed (it used to hang);
/// a bad request echoes its `req`; empty lines are ignored; `send` to our own id is `own_id`.
#[test]
fn finding_5_and_6_the_control_api_answers_every_client_and_request() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", free_port(), &[], &[]),
    );
    let me = torchat_testkit::legacy_id("alice");
    // 64 clients, each answered once (so each surely holds a slot).
    let clients: Vec<torchat_testkit::Client> = (0..64)
        .map(|_| {
            let mut c = d.client();
            c.ok(json!({"cmd": "info"}));
            c
        })
        .collect();
    let extra = UnixStream::connect(d.dir.join("control.sock")).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rd = BufReader::new(extra);
    let mut l = String::new();
    let n = rd.read_line(&mut l).expect("an answer, not a hang");
    assert!(n > 0);
    let v: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["error"]["code"], json!("too_many_clients"));
    l.clear();
    assert_eq!(
        rd.read_line(&mut l).unwrap(),
        0,
        "closed after the error line"
    );
    drop(clients);
    std::thread::sleep(Duration::from_millis(200));

    let s = UnixStream::connect(d.dir.join("control.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut wr = s;
    wr.write_all(b"{\"req\":77,\"cmd\":\"no_such_command\"}\n")
        .unwrap();
    let r = reply(&mut rd);
    assert_eq!(
        (r["req"].clone(), r["ok"].clone()),
        (json!(77), json!(false))
    );
    wr.write_all(b"\n   \n{\"req\":78,\"cmd\":\"info\"}\n")
        .unwrap();
    let r = reply(&mut rd);
    assert_eq!(r["req"], json!(78), "empty lines are ignored: {r}");
    wr.write_all(
        format!("{{\"req\":79,\"cmd\":\"send\",\"to\":\"{me}\",\"text\":\"x\"}}\n").as_bytes(),
    )
    .unwrap();
    let r = reply(&mut rd);
    assert_eq!(r["error"]["code"], json!("own_id"), "{r}");
}
