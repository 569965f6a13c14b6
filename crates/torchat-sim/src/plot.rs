//! The sweep's two plots, as SVG (plotters' SVG backend; no fonts or bitmaps needed).

use std::path::Path;

use plotters::prelude::*;

use crate::scenario::Mode;
use crate::sweep::Point;
use crate::sync_sweep::{ChurnPoint, CostPoint};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

fn sizes(points: &[Point]) -> Vec<usize> {
    let mut v: Vec<usize> = points.iter().map(|p| p.n).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Delivery ratio against link-failure probability, per group size and mode.
pub fn delivery(points: &[Point], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let pmax = points.iter().map(|p| p.p).fold(0.0, f64::max) * 100.0;
    let ymin = points
        .iter()
        .map(|p| p.delivery)
        .fold(1.0, f64::min)
        .min(0.3);
    let ymin = (ymin * 10.0).floor() / 10.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Group chat delivery ratio vs. link failures",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..pmax.max(1.0), ymin..1.02f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("probability that a pair link is down for the whole run (%)")
        .y_desc("delivery ratio (member, message) pairs")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_labels(8)
        .y_labels(10)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(err)?;
    for (k, n) in sizes(points).into_iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        for mode in [Mode::Redundancy, Mode::Noredundancy] {
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.n == n && p.mode == mode)
                .map(|p| (p.p * 100.0, p.delivery))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let label = match mode {
                Mode::Redundancy => format!("n = {n}, redundancy extension"),
                Mode::Noredundancy => format!("n = {n}, plain (noredundancy)"),
            };
            match mode {
                Mode::Redundancy => {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                        .map_err(err)?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                        });
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(err)?;
                }
                Mode::Noredundancy => {
                    chart
                        .draw_series(DashedLineSeries::new(
                            pts.clone(),
                            8,
                            5,
                            color.stroke_width(2),
                        ))
                        .map_err(err)?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(
                            pts.iter()
                                .map(|&p| TriangleMarker::new(p, 5, color.stroke_width(2))),
                        )
                        .map_err(err)?;
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Group lines per message against group size, with the (n−1)² bound and n−1.
pub fn transmissions(points: &[Point], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ns = sizes(points);
    let nmax = ns.last().copied().unwrap_or(10) as f64;
    let nmin = ns.first().copied().unwrap_or(2) as f64;
    let ymax = ((nmax - 1.0) * (nmax - 1.0)).max(10.0) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption("Group lines per message vs. group size", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (nmin * 0.9..nmax * 1.1)
                .log_scale()
                .with_key_points(ns.iter().map(|n| *n as f64).collect::<Vec<_>>()),
            (1f64..ymax)
                .log_scale()
                .with_key_points(vec![1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0]),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("group size n (log scale)")
        .y_desc("groupchat lines written per message (log scale)")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    let mut probs: Vec<f64> = points.iter().map(|p| p.p).collect();
    probs.sort_by(f64::total_cmp);
    probs.dedup();
    let mut k = 0;
    for mode in [Mode::Redundancy, Mode::Noredundancy] {
        for &p in &probs {
            let color = COLORS[k % COLORS.len()];
            k += 1;
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|x| x.mode == mode && x.p == p)
                .map(|x| (x.n as f64, x.lines_per_message.max(1.0)))
                .collect();
            let label = format!(
                "{}, {:.0} % links down",
                match mode {
                    Mode::Redundancy => "redundancy",
                    Mode::Noredundancy => "plain",
                },
                p * 100.0
            );
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&q| Circle::new(q, 4, color.filled())))
                .map_err(err)?;
        }
    }
    let curve = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (0..=60)
            .map(|k| {
                let n = nmin * (nmax / nmin).powf(f64::from(k) / 60.0);
                (n, f(n).max(1.0))
            })
            .collect()
    };
    let black = RGBColor(40, 40, 40);
    chart
        .draw_series(DashedLineSeries::new(
            curve(&|n| (n - 1.0) * (n - 1.0)),
            10,
            6,
            black.stroke_width(2),
        ))
        .map_err(err)?
        .label("bound (n−1)²")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 10, y)], black.stroke_width(2)));
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(DashedLineSeries::new(
            curve(&|n| n - 1.0),
            4,
            4,
            grey.stroke_width(2),
        ))
        .map_err(err)?
        .label("n−1 (direct copies only)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 4, y)], grey.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn cost_sizes(points: &[CostPoint]) -> Vec<usize> {
    let mut v: Vec<usize> = points.iter().map(|p| p.n).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn cost_series(
    points: &[CostPoint],
    sync: bool,
    regime: &str,
    f: impl Fn(&CostPoint) -> f64,
) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.sync == sync && p.regime == regime)
        .map(|p| (p.n as f64, f(p)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

/// Full copies per message against group size, with and without `torchat_sync`.
pub fn sync_copies(points: &[CostPoint], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ns = cost_sizes(points);
    let nmax = ns.last().copied().unwrap_or(10) as f64;
    let nmin = ns.first().copied().unwrap_or(2) as f64;
    let ymax = ((nmax - 1.0) * (nmax - 1.0)).max(10.0) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Full copies per message vs. group size (steady state)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (nmin * 0.9..nmax * 1.1)
                .log_scale()
                .with_key_points(ns.iter().map(|n| *n as f64).collect::<Vec<_>>()),
            (1f64..ymax)
                .log_scale()
                .with_key_points(vec![1.0, 10.0, 100.0, 1_000.0, 10_000.0]),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("group size n (log scale)")
        .y_desc("lines carrying the text, per message (log scale)")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    let series = [
        (
            false,
            "isolated",
            "without torchat_sync (seed echoes)",
            COLORS[1],
        ),
        (
            true,
            "isolated",
            "torchat_sync, isolated messages",
            COLORS[0],
        ),
        (true, "burst", "torchat_sync, bursts of 5", COLORS[2]),
    ];
    for (sync, regime, label, color) in series {
        let pts = cost_series(points, sync, regime, |p| p.copies.max(1.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&q| Circle::new(q, 4, color.filled())))
            .map_err(err)?;
    }
    let curve = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        (0..=60)
            .map(|k| {
                let n = nmin * (nmax / nmin).powf(f64::from(k) / 60.0);
                (n, f(n).max(1.0))
            })
            .collect()
    };
    type Reference<'a> = (&'a str, &'a dyn Fn(f64) -> f64, RGBColor);
    let refs: [Reference<'_>; 3] = [
        ("(n−1)²", &|n| (n - 1.0) * (n - 1.0), RGBColor(40, 40, 40)),
        (
            "1.5 (n−1): the goal",
            &|n| 1.5 * (n - 1.0),
            RGBColor(120, 120, 120),
        ),
        ("n−1", &|n| n - 1.0, RGBColor(180, 180, 180)),
    ];
    for (label, f, color) in refs {
        chart
            .draw_series(DashedLineSeries::new(curve(f), 6, 5, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 10, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Bytes per message against group size: payload with and without the extension, and the
/// extension's control bytes.
pub fn sync_bytes(points: &[CostPoint], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ns = cost_sizes(points);
    let nmax = ns.last().copied().unwrap_or(10) as f64;
    let nmin = ns.first().copied().unwrap_or(2) as f64;
    let ymax = points
        .iter()
        .map(|p| p.payload.max(p.control))
        .fold(1000.0, f64::max)
        * 3.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Bytes written per message vs. group size (steady state)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(
            (nmin * 0.9..nmax * 1.1)
                .log_scale()
                .with_key_points(ns.iter().map(|n| *n as f64).collect::<Vec<_>>()),
            (10f64..ymax)
                .log_scale()
                .with_key_points(vec![10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("group size n (log scale)")
        .y_desc("bytes per message, whole group (log scale)")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1e6 {
                format!("{:.0} MB", y / 1e6)
            } else if *y >= 1e3 {
                format!("{:.0} kB", y / 1e3)
            } else {
                format!("{y:.0} B")
            }
        })
        .draw()
        .map_err(err)?;
    let series: [(bool, &str, &str, RGBColor, bool); 4] = [
        (
            false,
            "isolated",
            "full copies, without torchat_sync",
            COLORS[1],
            false,
        ),
        (
            true,
            "isolated",
            "full copies, torchat_sync",
            COLORS[0],
            false,
        ),
        (
            true,
            "isolated",
            "control (acks, digests…), isolated messages",
            COLORS[4],
            true,
        ),
        (
            true,
            "burst",
            "control (acks, digests…), bursts of 5",
            COLORS[2],
            true,
        ),
    ];
    for (sync, regime, label, color, control) in series {
        let pts = cost_series(points, sync, regime, |p| {
            if control {
                p.control.max(10.0)
            } else {
                p.payload.max(10.0)
            }
        });
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&q| Circle::new(q, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Control bytes as a share of the payload against group size, with the 10 % goal.
pub fn sync_overhead(points: &[CostPoint], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ns = cost_sizes(points);
    let nmax = ns.last().copied().unwrap_or(10) as f64;
    let nmin = ns.first().copied().unwrap_or(2) as f64;
    let ymax = points
        .iter()
        .filter(|p| p.sync)
        .map(|p| 100.0 * p.control / p.payload.max(1.0))
        .fold(15.0, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "torchat_sync control bytes / payload bytes (steady state)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (nmin * 0.9..nmax * 1.1)
                .log_scale()
                .with_key_points(ns.iter().map(|n| *n as f64).collect::<Vec<_>>()),
            0f64..ymax,
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("group size n (log scale)")
        .y_desc("overhead (%)")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    for (regime, label, color) in [
        ("isolated", "isolated messages (one every 6 s)", COLORS[4]),
        ("burst", "bursts of 5 (every 30 s)", COLORS[2]),
    ] {
        let pts = cost_series(points, true, regime, |p| {
            100.0 * p.control / p.payload.max(1.0)
        });
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|&q| Circle::new(q, 4, color.filled())))
            .map_err(err)?;
    }
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(nmin * 0.9, 10.0), (nmax * 1.1, 10.0)],
            6,
            5,
            grey.stroke_width(2),
        ))
        .map_err(err)?
        .label("goal: 10 % at n = 100")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 10, y)], grey.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Delivered fraction over time in each churn scenario, with and without the extension.
pub fn sync_churn(points: &[ChurnPoint], path: &Path) -> Result<(), String> {
    let mut names: Vec<String> = Vec::new();
    for p in points {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    let rows = names.len().div_ceil(2).max(1);
    let root = SVGBackend::new(path, (1100, 330 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((rows, 2));
    for (name, area) in names.iter().zip(panels.iter()) {
        let tmax = points
            .iter()
            .filter(|p| p.name == *name)
            .flat_map(|p| p.curve.last().map(|c| c.0))
            .fold(1.0, f64::max);
        let hours = tmax > 4.0 * 3600.0;
        let scale = if hours { 3600.0 } else { 60.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(name.as_str(), ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..tmax / scale, 0f64..1.05f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(if hours { "hours" } else { "minutes" })
            .y_desc("delivered")
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 13))
            .y_labels(6)
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()
            .map_err(err)?;
        for (sync, color, label) in [
            (false, COLORS[1], "without torchat_sync"),
            (true, COLORS[0], "torchat_sync"),
        ] {
            let Some(p) = points.iter().find(|p| p.name == *name && p.sync == sync) else {
                continue;
            };
            let pts: Vec<(f64, f64)> = p.curve.iter().map(|(t, f)| (t / scale, *f)).collect();
            let s = if sync {
                chart.draw_series(LineSeries::new(pts, color.stroke_width(3)))
            } else {
                chart.draw_series(DashedLineSeries::new(pts, 8, 5, color.stroke_width(3)))
            };
            s.map_err(err)?.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 12))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
