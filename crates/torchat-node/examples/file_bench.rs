//! File-transfer throughput between two nodes over loopback (direct transport, SQLite stores
//! and download directories in a temporary directory): a 100 MiB file, from the receiver's
//! accept to the last byte written, sha256 checked. Figures go to docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p torchat-node --example file_bench [size in MiB]
//! ```
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Api {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
    n: u64,
}

impl Api {
    fn connect(sock: &Path) -> Api {
        let s = UnixStream::connect(sock).unwrap();
        Api {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            n: 0,
        }
    }
    fn call(&mut self, mut v: Value) -> Value {
        self.n += 1;
        v["req"] = json!(self.n);
        self.wr.write_all(format!("{v}\n").as_bytes()).unwrap();
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).unwrap();
            let r: Value = serde_json::from_str(&l).unwrap();
            if r["req"] == json!(self.n) {
                assert_eq!(r["ok"], json!(true), "{r}");
                return r["result"].clone();
            }
        }
    }
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(300);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out: {what}");
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let root = tempfile::tempdir().unwrap();
    let ids = ["alicebenchaaaaaa", "bobbenchaaaaaaaa"];
    let ports = [port(), port()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut socks = vec![];
    let mut handles = vec![];
    for i in 0..2 {
        let own: torchat_wire::OnionId = ids[i].parse().unwrap();
        let other: torchat_wire::OnionId = ids[1 - i].parse().unwrap();
        let dir = root.path().join(ids[i]);
        std::fs::create_dir_all(&dir).unwrap();
        let h = rt.block_on(async {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let routes = BTreeMap::from([(other, ([127, 0, 0, 1], ports[1 - i]).into())]);
            let (direct, _) = torchat_tor::direct::Direct::start(
                own.clone(),
                ([127, 0, 0, 1], ports[i]).into(),
                routes,
                tx,
            )
            .await
            .unwrap();
            let cfg = torchat_node::NodeConfig {
                files: torchat_node::FilesConfig::new(dir.join("downloads")),
                data_dir: dir.clone(),
                core: torchat_core::Config::new(own.clone()),
                log_secrets: false,
            };
            let store = torchat_store::SqliteStore::open(dir.join("store.sqlite3")).unwrap();
            torchat_node::start(cfg, Box::new(store), Arc::new(direct), rx)
                .await
                .unwrap()
        });
        socks.push(h.control_path.clone());
        handles.push(h);
    }
    let (mut a, mut b) = (Api::connect(&socks[0]), Api::connect(&socks[1]));
    a.call(json!({"cmd": "add", "id": ids[1]}));
    b.call(json!({"cmd": "add", "id": ids[0]}));
    wait("online", || {
        let l = a.call(json!({"cmd": "buddies"}));
        l[0]["presence"] == json!("available")
    });
    let src = root.path().join("bench.bin");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(mib << 20);
    while data.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&src, &data).unwrap();
    let sha = Sha256::digest(&data);
    drop(data);
    a.call(json!({"cmd": "send_file", "to": ids[1], "path": src.display().to_string()}));
    let mut rid = None;
    wait("offer", || {
        rid = b
            .call(json!({"cmd": "files"}))
            .as_array()
            .unwrap()
            .first()
            .map(|t| t["id"].clone());
        rid.is_some()
    });
    let rid = rid.unwrap();
    let t0 = Instant::now();
    b.call(json!({"cmd": "file_accept", "file": rid}));
    let mut path = String::new();
    wait("complete", || {
        let t = b.call(json!({"cmd": "files"}))[0].clone();
        path = t["path"].as_str().unwrap_or("").to_owned();
        t["state"] == json!("complete")
    });
    let secs = t0.elapsed().as_secs_f64();
    let got = Sha256::digest(std::fs::read(&path).unwrap());
    assert_eq!(got, sha, "sha256 of the received file");
    println!(
        "{mib} MiB in {secs:.2} s: {:.1} MiB/s ({:.1} MB/s), sha256 ok",
        mib as f64 / secs,
        (mib << 20) as f64 / secs / 1e6
    );
    rt.block_on(async {
        for h in handles {
            h.shutdown().await;
        }
    });
}
