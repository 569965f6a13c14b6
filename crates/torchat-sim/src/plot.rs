//! The sweep's two plots, as SVG (plotters' SVG backend; no fonts or bitmaps needed).

use std::path::Path;

use plotters::prelude::*;

use crate::scenario::Mode;
use crate::sweep::Point;

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
