//! Decode and encode throughput of the wire codec on a realistic mix of lines.
//!
//! Run: `cargo bench -p torchat-wire --bench codec`. Figures are recorded in docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use torchat_wire::{GroupId, OnionId, Packet, PacketDecoder, Spacing, Status};

/// A deterministic mix: per 100 lines, 60 chat messages (10 to 600 bytes, some with newlines
/// and backslashes), 25 status keepalives, 12 group echoes, 2 profile/other lines and one
/// 8 KiB file block.
fn mix() -> Vec<Packet> {
    let gid = GroupId::new("6f012391-883d-4f4f-8d54-52c4227b3ac9").unwrap();
    let who = OnionId::parse("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid").unwrap();
    let mut out = Vec::new();
    let mut x: u32 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..1000u32 {
        let p = match i % 100 {
            0 => {
                let data: Vec<u8> = (0..8192u32).map(|_| (next() & 0xff) as u8).collect();
                Packet::Filedata {
                    id: "3735928559".into(),
                    start: 8192 * u64::from(i),
                    md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
                    data,
                }
            }
            1..=25 => Packet::Status(Status::Available),
            26..=37 => Packet::GroupEchoedMessage {
                gid: gid.clone(),
                sender: who.clone(),
                text: text(next() as usize % 300 + 10, &mut next),
            },
            38 => Packet::ProfileName(b"alice".to_vec()),
            39 => Packet::AddMe(Spacing::Space),
            _ => Packet::Message(text(next() as usize % 600 + 10, &mut next)),
        };
        out.push(p);
    }
    out
}

fn text(len: usize, next: &mut impl FnMut() -> u32) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "hello ",
        "über ",
        "line\n",
        "C:\\path ",
        "ok ",
        "tor ",
        "group ",
    ];
    let mut t = Vec::with_capacity(len + 8);
    while t.len() < len {
        t.extend_from_slice(WORDS[next() as usize % WORDS.len()].as_bytes());
    }
    t
}

fn bench(c: &mut Criterion) {
    let packets = mix();
    let mut stream = Vec::new();
    for p in &packets {
        p.encode_into(&mut stream);
    }
    eprintln!("mix: {} lines, {} bytes", packets.len(), stream.len());

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    for chunk in [4096usize, 65536] {
        g.bench_with_input(BenchmarkId::new("decode", chunk), &chunk, |b, &chunk| {
            b.iter(|| {
                let mut dec = PacketDecoder::default();
                let mut n = 0usize;
                for c in stream.chunks(chunk) {
                    dec.feed_with(c, |p| {
                        if p.is_ok() {
                            n += 1;
                        }
                    });
                }
                assert_eq!(n, packets.len());
                n
            })
        });
    }
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(stream.len());
        b.iter(|| {
            out.clear();
            for p in &packets {
                p.encode_into(&mut out);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
