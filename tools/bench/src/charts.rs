//! SVG charts (plotters, SVG backend only): one picture per question the report answers. Bars are
//! medians over rounds, whiskers the min–max of the rounds. Most charts use a log scale because
//! the servers differ by orders of magnitude (PocketBase's ~50 KiB per connection next to a few
//! hundred bytes).

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::servers::ServerKind;
use crate::stats::Summary;
use crate::targets::fmt_num;

const SIZE: (u32, u32) = (960, 540);

pub fn color(kind: ServerKind) -> RGBColor {
    match kind {
        ServerKind::Ringcast => RGBColor(214, 83, 27),
        ServerKind::Baseline => RGBColor(45, 110, 190),
        ServerKind::Pocketbase => RGBColor(60, 150, 80),
        ServerKind::Floor => RGBColor(120, 120, 120),
    }
}

/// One server's values, one per group (or per x point).
pub struct Series {
    pub server: ServerKind,
    pub values: Vec<Option<Summary>>,
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// Axis range covering every min and max: decades for a log axis, 0..max+15 % for a linear one.
fn y_range(series: &[Series], log: bool) -> (f64, f64) {
    let vals: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .flat_map(|s| [s.min, s.max, s.median])
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    if vals.is_empty() {
        return (if log { 0.1 } else { 0.0 }, 1.0);
    }
    if log {
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf((hi * 1.3).log10().ceil()),
        )
    } else {
        (0.0, hi * 1.12)
    }
}

/// The white canvas with the title and, in a row under it, the legend (so that it never hides a
/// bar or a line); returns the area left for the plot.
fn frame<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    series: &[Series],
) -> anyhow::Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let (legend, plot) = body.split_vertically(34);
    let style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 100;
    let y = 14;
    for s in series {
        let c = color(s.server);
        legend
            .draw(&Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()))
            .map_err(err)?;
        legend
            .draw(&Text::new(s.server.title(), (x + 18, y), style.clone()))
            .map_err(err)?;
        x += 40 + 9 * s.server.title().len() as i32;
    }
    Ok(plot)
}

/// Grouped bars: one group per label, one bar per series, median with a min–max whisker and the
/// median written above the bar.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[Series],
    log: bool,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let plot = frame(&root, title, series)?;
    let (lo, hi) = y_range(series, log);
    let n = groups.len().max(1) as f64;
    let mut builder = ChartBuilder::on(&plot);
    builder
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    let width = 0.8 / series.len().max(1) as f64;
    let bar_x = |g: usize, s: usize| g as f64 + 0.1 + s as f64 * width;
    let label_style =
        TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    let group_style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));

    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_desc(y_desc)
                .y_label_formatter(&|v| fmt_num(*v))
                .light_line_style(BLACK.mix(0.05))
                .draw()
                .map_err(err)?;
            for (si, s) in series.iter().enumerate() {
                let c = color(s.server);
                let bars: Vec<_> = s
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(g, v)| v.map(|v| (g, v)))
                    .collect();
                chart
                    .draw_series(bars.iter().map(|(g, v)| {
                        let x = bar_x(*g, si);
                        Rectangle::new([(x, lo), (x + width * 0.92, v.median)], c.filled())
                    }))
                    .map_err(err)?
                    .label(s.server.title())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled())
                    });
                chart
                    .draw_series(bars.iter().map(|(g, v)| {
                        let x = bar_x(*g, si) + width * 0.46;
                        PathElement::new(vec![(x, v.min), (x, v.max)], BLACK.stroke_width(1))
                    }))
                    .map_err(err)?;
                chart
                    .draw_series(bars.iter().map(|(g, v)| {
                        let x = bar_x(*g, si) + width * 0.46;
                        Text::new(fmt_num(v.median), (x, v.max), label_style.clone())
                    }))
                    .map_err(err)?;
            }
            for (g, name) in groups.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(g as f64 + 0.5, lo));
                root.draw(&Text::new(name.clone(), (px, py + 8), group_style.clone()))
                    .map_err(err)?;
            }
            root.present().map_err(err)?;
        }};
    }
    if log {
        draw!(
            builder
                .build_cartesian_2d(0f64..n, (lo..hi).log_scale())
                .map_err(err)?
        );
    } else {
        draw!(builder.build_cartesian_2d(0f64..n, lo..hi).map_err(err)?);
    }
    Ok(())
}

/// Lines over a numeric x axis (log y), with min–max whiskers: RSS per connection by connection
/// count.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    xs: &[f64],
    series: &[Series],
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let plot = frame(&root, title, series)?;
    let (lo, hi) = y_range(series, true);
    let xmax = xs.iter().copied().fold(0.0, f64::max) * 1.08;
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..xmax.max(1.0), (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| fmt_num(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(err)?;
    let label_style =
        TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
    for s in series {
        let c = color(s.server);
        let pts: Vec<(f64, Summary)> = xs
            .iter()
            .zip(&s.values)
            .filter_map(|(x, v)| v.map(|v| (*x, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, v)| (*x, v.median)),
                c.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, v)| Circle::new((*x, v.median), 4, c.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(pts.iter().map(|(x, v)| {
                PathElement::new(vec![(*x, v.min), (*x, v.max)], BLACK.stroke_width(1))
            }))
            .map_err(err)?;
        chart
            .draw_series(pts.iter().map(|(x, v)| {
                Text::new(
                    format!(" {}", fmt_num(v.median)),
                    (*x, v.median),
                    label_style.clone(),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: f64) -> Option<Summary> {
        Some(Summary {
            median: v,
            min: v * 0.9,
            max: v * 1.1,
            n: 3,
        })
    }

    #[test]
    fn charts_render_to_svg() {
        let dir = std::env::temp_dir().join(format!("ringcast-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let series = vec![
            Series {
                server: ServerKind::Ringcast,
                values: vec![s(500.0), s(450.0), None],
            },
            Series {
                server: ServerKind::Pocketbase,
                values: vec![s(50_000.0), s(52_000.0), s(53_000.0)],
            },
        ];
        let groups: Vec<String> = ["1k", "10k", "19k"].iter().map(|g| g.to_string()).collect();
        let bars = dir.join("bars.svg");
        grouped_bars(&bars, "t", "B", &groups, &series, true).unwrap();
        grouped_bars(&dir.join("lin.svg"), "t", "B", &groups, &series, false).unwrap();
        let l = dir.join("lines.svg");
        lines(&l, "t", "x", "y", &[1e3, 1e4, 1.9e4], &series).unwrap();
        let text = std::fs::read_to_string(&bars).unwrap();
        assert!(text.contains("<svg") && text.contains("PocketBase") && text.contains("10k"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
