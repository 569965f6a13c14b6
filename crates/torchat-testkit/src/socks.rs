//! A SOCKS5 proxy for tests and benchmarks (no auth, CONNECT with a domain name) that maps
//! `<id>.onion:11009` to local ports, as Tor would. One thread per connection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A running proxy.
#[derive(Clone)]
pub struct MappingProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    map: Arc<RwLock<BTreeMap<String, u16>>>,
    connects: Arc<AtomicUsize>,
}

impl MappingProxy {
    /// Starts a proxy with `map`: onion id (without `.onion`) → local port.
    pub fn start(map: BTreeMap<String, u16>) -> MappingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = MappingProxy {
            port: l.local_addr().unwrap().port(),
            map: Arc::new(RwLock::new(map)),
            connects: Arc::default(),
        };
        let me = p.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let me = me.clone();
                std::thread::spawn(move || {
                    let _ = me.serve(s);
                });
            }
        });
        p
    }

    /// Adds or changes a mapping.
    pub fn route(&self, id: &str, port: u16) {
        self.map.write().unwrap().insert(id.to_owned(), port);
    }

    /// Connections it made so far.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    fn serve(&self, mut s: TcpStream) -> std::io::Result<()> {
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 262];
        // greeting: VER NMETHODS METHODS
        s.read_exact(&mut b[..2])?;
        let n = b[1] as usize;
        s.read_exact(&mut b[..n])?;
        s.write_all(&[5, 0])?;
        // request: VER CMD RSV ATYP=3 LEN NAME PORT
        s.read_exact(&mut b[..5])?;
        assert_eq!(&b[..4], &[5, 1, 0, 3], "CONNECT with a domain name");
        let len = b[4] as usize;
        s.read_exact(&mut b[..len + 2])?;
        let host = String::from_utf8_lossy(&b[..len]).into_owned();
        let dport = u16::from_be_bytes([b[len], b[len + 1]]);
        assert_eq!(dport, 11009);
        let target = host
            .strip_suffix(".onion")
            .and_then(|id| self.map.read().unwrap().get(id).copied());
        let up = target.and_then(|t| TcpStream::connect(("127.0.0.1", t)).ok());
        let Some(up) = up else {
            // 0x04 host unreachable (Tor says 0xF0 for a missing descriptor).
            return s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
        };
        let _ = up.set_nodelay(true);
        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
        self.connects.fetch_add(1, Ordering::SeqCst);
        let (mut a, mut b2) = (s.try_clone()?, up.try_clone()?);
        let (mut s2, mut up2) = (s, up);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut a, &mut up2);
            let _ = up2.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut b2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
        Ok(())
    }
}
