//! `faas experiment report DIR`: plots from a run's `calls.csv` (PNG and
//! SVG, drawn with plotters) and `report.html`, which shows them with the
//! summary table. Text is set in a TrueType font read at run time
//! (DejaVu Sans, Liberation Sans, Noto Sans or FreeSans from the usual
//! places, or `--font`), so the binary carries none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::record::{Row, read_calls};
use super::stats::{Summary, percentile};
use crate::error::{Error, Result};

/// The category axis's description.
const SETTING: &str = "setting (memory, CPU, payload)";
/// Every plot's size, in pixels.
pub const SIZE: (u32, u32) = (1200, 700);
const FAMILY: &str = "sans-serif";
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];
/// One color per category, readable on white and told apart.
const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The results folder of `faas experiment run`
    pub dir: PathBuf,
    /// A TrueType font for the labels [default: DejaVu Sans or another
    /// common sans-serif font found on this system]
    #[arg(long, env = "FAAS_FONT", value_name = "FILE")]
    pub font: Option<PathBuf>,
}

/// The plots `report` draws: file stem and what it shows.
pub const PLOTS: &[(&str, &str)] = &[
    (
        "runtime-by-memory",
        "Runtime in the function by memory setting (warm calls that succeeded)",
    ),
    (
        "cpu-by-memory",
        "CPU time per call, user and kernel, by memory setting",
    ),
    ("latency-histogram", "Client latency, histogram"),
    ("latency-cdf", "Client latency, cumulative distribution"),
    (
        "latency-over-time",
        "Client latency over the run, cold starts marked",
    ),
    (
        "throughput-over-time",
        "Calls completed per second over the run",
    ),
];

pub fn report(args: ReportArgs) -> Result<()> {
    let dir = &args.dir;
    let rows = read_calls(&dir.join("calls.csv"))?;
    if rows.is_empty() {
        return Err(Error::new(format!(
            "{} holds no calls to plot",
            dir.join("calls.csv").display()
        )));
    }
    let summary: Vec<Summary> = read_summary(&dir.join("summary.csv"))?;
    let record: serde_json::Value = std::fs::read(dir.join("experiment.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    load_font(args.font.as_deref())?;
    let data = Data::new(rows);
    for (stem, _) in PLOTS {
        for svg in [false, true] {
            let path = dir.join(format!("{stem}.{}", if svg { "svg" } else { "png" }));
            let drawn = if svg {
                draw(
                    &data,
                    stem,
                    SVGBackend::new(&path, SIZE).into_drawing_area(),
                )
            } else {
                draw(
                    &data,
                    stem,
                    BitMapBackend::new(&path, SIZE).into_drawing_area(),
                )
            };
            drawn.map_err(|e| Error::new(format!("cannot draw {}: {e}", path.display())))?;
        }
    }
    let html = dir.join("report.html");
    std::fs::write(&html, page(&record, &summary, &data))
        .map_err(|e| Error::new(format!("cannot write {}: {e}", html.display())))?;
    crate::output::print(&format!("{}\n", html.display()))
}

fn read_summary(path: &Path) -> Result<Vec<Summary>> {
    let failed = |e: csv::Error| Error::new(format!("cannot read {}: {e}", path.display()));
    csv::Reader::from_path(path)
        .map_err(failed)?
        .deserialize()
        .collect::<std::result::Result<Vec<Summary>, _>>()
        .map_err(failed)
}

/// Registers the labels' font: the one given, else the first found.
fn load_font(given: Option<&Path>) -> Result<()> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => FONTS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::new(
                    "no font for the plots' labels: install one (Debian: fonts-dejavu-core) or give --font FILE.ttf",
                )
            })?,
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::new(format!(
            "cannot read the font {}: {}",
            path.display(),
            crate::error::io_reason(&e)
        ))
    })?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font(FAMILY, style, bytes)
            .map_err(|_| Error::new(format!("{} is not a TrueType font", path.display())))?;
    }
    Ok(())
}

/// The calls, grouped for plotting.
struct Data {
    rows: Vec<Row>,
    /// Category labels (function and memory setting), in order of appearance.
    categories: Vec<String>,
    /// Each row's category index.
    category_of: Vec<usize>,
    /// The first call's start, in Unix nanoseconds.
    t0: u64,
}

impl Data {
    fn new(rows: Vec<Row>) -> Data {
        let several = {
            let mut functions: Vec<&str> = rows.iter().map(|r| r.function.as_str()).collect();
            functions.sort_unstable();
            functions.dedup();
            functions.len() > 1
        };
        let first_payload = rows.first().map(|r| r.payload_id);
        let several_payloads = rows.iter().any(|r| Some(r.payload_id) != first_payload);
        let mut categories: Vec<String> = Vec::new();
        let category_of = rows
            .iter()
            .map(|r| {
                let mut label = if r.memory.is_empty() {
                    String::new()
                } else {
                    r.memory.clone()
                };
                if !r.cpu.is_empty() {
                    label = format!("{label} {} cpu", r.cpu).trim().to_owned();
                }
                if several || label.is_empty() {
                    label = format!("{} {label}", r.function).trim().to_owned();
                }
                if several_payloads {
                    label = format!("{label} payload {}", r.payload_id);
                }
                match categories.iter().position(|c| *c == label) {
                    Some(i) => i,
                    None => {
                        categories.push(label);
                        categories.len() - 1
                    }
                }
            })
            .collect();
        let t0 = rows.iter().map(|r| r.start_unix_ns).min().unwrap_or(0);
        Data {
            rows,
            categories,
            category_of,
            t0,
        }
    }

    /// Each category's values of `f` over the calls that succeeded (and,
    /// with `warm_only`, were not cold starts).
    fn by_category(&self, warm_only: bool, f: impl Fn(&Row) -> Option<f64>) -> Vec<Vec<f64>> {
        let mut out = vec![Vec::new(); self.categories.len()];
        for (row, &c) in self.rows.iter().zip(&self.category_of) {
            if row.failed() || (warm_only && row.cold_start) {
                continue;
            }
            if let Some(v) = f(row) {
                out[c].push(v);
            }
        }
        out
    }

    fn seconds(&self, row: &Row) -> f64 {
        row.start_unix_ns.saturating_sub(self.t0) as f64 / 1e9
    }
}

type Drawn<E> = std::result::Result<(), DrawingAreaErrorKind<E>>;

fn draw<DB: DrawingBackend>(
    data: &Data,
    stem: &str,
    root: DrawingArea<DB, Shift>,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let drawn = match stem {
        "runtime-by-memory" => runtime(data, &root),
        "cpu-by-memory" => cpu(data, &root),
        "latency-histogram" => histogram(data, &root),
        "latency-cdf" => cdf(data, &root),
        "latency-over-time" => over_time(data, &root),
        "throughput-over-time" => throughput(data, &root),
        other => unreachable!("no plot {other}"),
    };
    drawn.map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn label_style() -> TextStyle<'static> {
    (FAMILY, 20).into_font().into()
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The series' legend, framed, at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Drawn<DB::ErrorType> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(label_style())
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
}

/// A plot's title, margins and label areas (`plot`: its index in [`PLOTS`]).
fn builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    plot: usize,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(PLOTS[plot].1, (FAMILY, 30))
        .margin(24)
        .x_label_area_size(60)
        .y_label_area_size(90);
    builder
}

/// A plot's frame: title, axes over `x` and `y` described by `desc`, and,
/// for `categories`, their labels under integer x positions.
fn frame<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    plot: usize,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    categories: Option<&[String]>,
) -> std::result::Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = builder(root, plot).build_cartesian_2d(x, y)?;
    let labels = categories.map(category_label);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(label_style())
        .axis_desc_style(label_style());
    if let (Some(categories), Some(labels)) = (categories, &labels) {
        mesh.disable_x_mesh()
            .x_labels(categories.len().max(2) * 2 + 1)
            .x_label_formatter(labels);
    }
    mesh.draw()?;
    Ok(chart)
}

/// The top of a value axis: a little above the largest value.
fn top(values: impl IntoIterator<Item = f64>) -> f64 {
    let max = values.into_iter().fold(0.0f64, f64::max);
    if max > 0.0 { max * 1.08 } else { 1.0 }
}

/// Category labels under integer x positions 0..n.
fn category_label(categories: &[String]) -> impl Fn(&f64) -> String + '_ {
    move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

fn runtime<DB: DrawingBackend>(data: &Data, root: &DrawingArea<DB, Shift>) -> Drawn<DB::ErrorType> {
    let mut values = data.by_category(true, |r| r.function_ms);
    let mut measure = "runtime in the function (ms)";
    if values.iter().all(Vec::is_empty) {
        values = data.by_category(true, |r| r.client_ms);
        measure = "client latency (ms)";
    }
    let n = data.categories.len();
    let y_top = top(values.iter().flatten().copied());
    let mut chart = frame(
        root,
        0,
        (-0.5..n as f64 - 0.5, 0.0..y_top),
        (SETTING, measure),
        Some(&data.categories),
    )?;
    // Tukey's box plot: the box from the first to the third quartile, the
    // median across it, whiskers to the furthest calls within 1.5 box
    // lengths of it, the calls beyond those as dots.
    for (i, v) in values.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
        let color = PALETTE[i % PALETTE.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let (q1, median, q3) = (
            percentile(&sorted, 0.25),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.75),
        );
        let reach = 1.5 * (q3 - q1);
        let low = sorted
            .iter()
            .copied()
            .find(|x| *x >= q1 - reach)
            .unwrap_or(q1);
        let high = sorted
            .iter()
            .rev()
            .copied()
            .find(|x| *x <= q3 + reach)
            .unwrap_or(q3);
        let x = i as f64;
        let (half, cap) = (0.25, 0.12);
        chart.draw_series([
            PathElement::new([(x, low), (x, q1)], style),
            PathElement::new([(x, q3), (x, high)], style),
            PathElement::new([(x - cap, low), (x + cap, low)], style),
            PathElement::new([(x - cap, high), (x + cap, high)], style),
            PathElement::new(
                [(x - half, median), (x + half, median)],
                color.stroke_width(3),
            ),
        ])?;
        chart.draw_series([Rectangle::new([(x - half, q1), (x + half, q3)], style)])?;
        chart.draw_series(
            sorted
                .iter()
                .filter(|y| **y < low || **y > high)
                .map(|y| Circle::new((x, *y), 3, color.filled())),
        )?;
    }
    Ok(())
}

fn cpu<DB: DrawingBackend>(data: &Data, root: &DrawingArea<DB, Shift>) -> Drawn<DB::ErrorType> {
    let mean = |v: &Vec<f64>| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let user: Vec<f64> = data
        .by_category(false, |r| r.cpu_user_ms)
        .iter()
        .map(mean)
        .collect();
    let kernel: Vec<f64> = data
        .by_category(false, |r| r.cpu_kernel_ms)
        .iter()
        .map(mean)
        .collect();
    let n = data.categories.len();
    let y_top = top(user.iter().zip(&kernel).map(|(u, k)| u + k));
    let mut chart = frame(
        root,
        1,
        (-0.5..n as f64 - 0.5, 0.0..y_top),
        (SETTING, "mean CPU time per call (ms)"),
        Some(&data.categories),
    )?;
    let user_color = PALETTE[0];
    let kernel_color = PALETTE[1];
    chart
        .draw_series(user.iter().enumerate().map(|(i, u)| {
            Rectangle::new(
                [(i as f64 - 0.3, 0.0), (i as f64 + 0.3, *u)],
                user_color.filled(),
            )
        }))?
        .label("user")
        .legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 16, y + 8)], user_color.filled()));
    chart
        .draw_series(user.iter().zip(&kernel).enumerate().map(|(i, (u, k))| {
            Rectangle::new(
                [(i as f64 - 0.3, *u), (i as f64 + 0.3, u + k)],
                kernel_color.filled(),
            )
        }))?
        .label("kernel")
        .legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 16, y + 8)], kernel_color.filled()));
    legend(&mut chart, SeriesLabelPosition::MiddleRight)
}

fn histogram<DB: DrawingBackend>(
    data: &Data,
    root: &DrawingArea<DB, Shift>,
) -> Drawn<DB::ErrorType> {
    let mut values: Vec<f64> = data.by_category(false, |r| r.client_ms).concat();
    values.sort_by(f64::total_cmp);
    // Bins up to the 99th percentile; slower calls go in the last bin.
    let high = if values.is_empty() {
        1.0
    } else {
        percentile(&values, 0.99).max(values[0] + 1e-3)
    };
    let low = values.first().copied().unwrap_or(0.0).min(high * 0.999);
    const BINS: usize = 40;
    let step = (high - low) / BINS as f64;
    let mut counts = [0u64; BINS];
    for v in &values {
        let bin = (((v - low) / step) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    let y_top = top(counts.iter().map(|&c| c as f64));
    let mut chart = frame(
        root,
        2,
        (low..high, 0.0..y_top),
        (
            "client latency (ms; the last bar holds everything above the 99th percentile)",
            "calls",
        ),
        None,
    )?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = low + step * i as f64;
        Rectangle::new(
            [(x0, 0.0), (x0 + step * 0.95, c as f64)],
            PALETTE[0].filled(),
        )
    }))?;
    Ok(())
}

fn cdf<DB: DrawingBackend>(data: &Data, root: &DrawingArea<DB, Shift>) -> Drawn<DB::ErrorType> {
    let values = data.by_category(false, |r| r.client_ms);
    let x_top = top(values.iter().flatten().copied());
    let x_low = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mut builder = builder(root, 3);
    // Latencies an order of magnitude and more apart read on a log scale.
    if x_low.is_finite() && x_top / x_low > 20.0 {
        let mut chart = builder.build_cartesian_2d((x_low * 0.9..x_top).log_scale(), 0f64..1.0)?;
        chart
            .configure_mesh()
            .x_desc("client latency (ms, log scale)")
            .y_desc("fraction of calls at or below")
            .label_style(label_style())
            .axis_desc_style(label_style())
            .draw()?;
        cdf_lines(&mut chart, data, &values)
    } else {
        let mut chart = frame(
            root,
            3,
            (0.0..x_top, 0.0..1.0),
            ("client latency (ms)", "fraction of calls at or below"),
            None,
        )?;
        cdf_lines(&mut chart, data, &values)
    }
}

fn cdf_lines<'a, DB: DrawingBackend + 'a, X: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
    data: &Data,
    values: &[Vec<f64>],
) -> Drawn<DB::ErrorType> {
    for (i, v) in values.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                sorted
                    .iter()
                    .enumerate()
                    .map(|(k, x)| (*x, (k + 1) as f64 / n)),
                color.stroke_width(3),
            ))?
            .label(data.categories[i].clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    legend(chart, SeriesLabelPosition::LowerRight)
}

fn over_time<DB: DrawingBackend>(
    data: &Data,
    root: &DrawingArea<DB, Shift>,
) -> Drawn<DB::ErrorType> {
    let points: Vec<(f64, f64, &Row)> = data
        .rows
        .iter()
        .filter_map(|r| Some((data.seconds(r), r.client_ms?, r)))
        .collect();
    let x_top = top(points.iter().map(|p| p.0));
    let y_top = top(points.iter().map(|p| p.1));
    let mut chart = frame(
        root,
        4,
        (0.0..x_top, 0.0..y_top),
        ("time since the first call (s)", "client latency (ms)"),
        None,
    )?;
    let warm = PALETTE[0];
    let cold = PALETTE[3];
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| !p.2.cold_start && !p.2.failed())
                .map(|p| Circle::new((p.0, p.1), 3, warm.filled())),
        )?
        .label("warm")
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, warm.filled()));
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| p.2.cold_start && !p.2.failed())
                .map(|p| TriangleMarker::new((p.0, p.1), 8, cold.filled())),
        )?
        .label("cold start")
        .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 8, cold.filled()));
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| p.2.failed())
                .map(|p| Cross::new((p.0, p.1), 6, BLACK.stroke_width(2))),
        )?
        .label("failed")
        .legend(|(x, y)| Cross::new((x + 8, y), 6, BLACK.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::MiddleRight)
}

fn throughput<DB: DrawingBackend>(
    data: &Data,
    root: &DrawingArea<DB, Shift>,
) -> Drawn<DB::ErrorType> {
    // Completions per bin: one-second bins, or finer for a short run.
    let ends: Vec<f64> = data
        .rows
        .iter()
        .map(|r| data.seconds(r) + r.client_ms.unwrap_or(0.0) / 1000.0)
        .collect();
    let span = ends.iter().copied().fold(0.0f64, f64::max);
    let bin = if span >= 20.0 {
        1.0
    } else {
        (span / 20.0).max(0.01)
    };
    let bins = (span / bin).floor() as usize + 1;
    let mut counts = vec![0u64; bins];
    for e in &ends {
        counts[((e / bin) as usize).min(bins - 1)] += 1;
    }
    let rates: Vec<(f64, f64)> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| ((i as f64 + 0.5) * bin, c as f64 / bin))
        .collect();
    let x_top = top(rates.iter().map(|r| r.0 + bin / 2.0));
    let y_top = top(rates.iter().map(|r| r.1));
    let mut chart = frame(
        root,
        5,
        (0.0..x_top, 0.0..y_top),
        (
            &format!("time since the first call (s; {bin:.2} s bins)"),
            "calls completed per second",
        ),
        None,
    )?;
    chart.draw_series(LineSeries::new(
        rates.iter().copied(),
        PALETTE[2].stroke_width(3),
    ))?;
    chart.draw_series(
        rates
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 3, PALETTE[2].filled())),
    )?;
    Ok(())
}

/// `report.html`: the run, the plots, the summary.
fn page(record: &serde_json::Value, summary: &[Summary], data: &Data) -> String {
    let name = record["experiment"]["name"]
        .as_str()
        .or_else(|| data.rows.first().map(|r| r.experiment.as_str()))
        .unwrap_or("experiment");
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;max-width:1250px}}img{{width:100%;border:1px solid #ddd;margin:1em 0}}\
         table{{border-collapse:collapse;font-size:0.9em}}td,th{{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}</style></head><body>\n\
         <h1>{title}</h1>\n",
        title = escape(name)
    );
    let meta: BTreeMap<&str, String> = [
        (
            "gateway",
            record["gateway"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "orchestration",
            record["gatewayInfo"]["provider"]["orchestration"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ),
        (
            "limits enforced by",
            record["gatewayInfo"]["provider"]["resourceLimits"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        ),
        (
            "started",
            record["startedAt"].as_str().unwrap_or("").to_owned(),
        ),
        (
            "finished",
            record["finishedAt"].as_str().unwrap_or("").to_owned(),
        ),
        ("calls", data.rows.len().to_string()),
        (
            "failed",
            data.rows.iter().filter(|r| r.failed()).count().to_string(),
        ),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    html.push_str("<p>");
    for (k, v) in &meta {
        let _ = write!(html, "<b>{}</b>: {} &nbsp; ", escape(k), escape(v));
    }
    html.push_str("</p>\n<h2>Summary</h2>\n<table><tr>");
    let headers = [
        "function",
        "memory",
        "cpu",
        "payload",
        "start",
        "n",
        "failed",
        "client mean ms",
        "client p50 ms",
        "client p95 ms",
        "client 95% CI ms",
        "function mean ms",
        "function p50 ms",
        "CPU user ms",
        "CPU kernel ms",
        "max RSS MiB",
    ];
    for h in headers {
        let _ = write!(html, "<th>{h}</th>");
    }
    html.push_str("</tr>\n");
    let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
    for s in summary {
        let figures = [
            f(s.client_mean_ms),
            f(s.client_median_ms),
            f(s.client_p95_ms),
            match (s.client_ci95_low_ms, s.client_ci95_high_ms) {
                (Some(l), Some(h)) => format!("{l:.2} – {h:.2}"),
                _ => "–".into(),
            },
            f(s.function_mean_ms),
            f(s.function_median_ms),
            f(s.cpu_user_mean_ms),
            f(s.cpu_kernel_mean_ms),
            s.rss_max_bytes
                .map_or("–".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
        ];
        let cells = s.group_cells().into_iter().chain(figures);
        html.push_str("<tr>");
        for c in cells {
            let _ = write!(html, "<td>{}</td>", escape(&c));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    for (stem, title) in PLOTS {
        let _ = write!(
            html,
            "<h2>{t}</h2>\n<a href=\"{stem}.png\"><img src=\"{stem}.svg\" alt=\"{t}\"></a>\n",
            t = escape(title)
        );
    }
    html.push_str("</body></html>\n");
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
