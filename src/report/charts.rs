//! Charts as SVG (for documents) and PNG (for quick looks), drawn with plotters.
//!
//! Each chart is drawn by one function generic over the plotters backend, so the SVG
//! and the PNG are the same picture. PNG text needs a font: DejaVu Sans is compiled in
//! (assets/DejaVuSans.ttf, Bitstream Vera licence, which allows bundling it with
//! software), so charts look the same on every machine and need no system fonts.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::ReportError;
use super::stats::{ols, pearson};

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (800, 520);
const BAR: RGBColor = RGBColor(70, 110, 170);
const LINE: RGBColor = RGBColor(200, 60, 50);

/// One bar chart: a bar per option, in the question's order.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramData {
    pub title: String,
    /// Text under the axis, such as what the scale ends mean.
    pub x_label: String,
    pub y_label: String,
    /// Tick label and height of each bar.
    pub bars: Vec<(String, f64)>,
}

/// One scatter plot of two constructs, with jitter and a least-squares line.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterData {
    pub x_id: String,
    pub y_id: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<(f64, f64)>,
    /// Seed of the jitter, so the picture is the same on every run.
    pub jitter_seed: u64,
}

impl ScatterData {
    /// `PC vs PPIT: r = -0.38, n = 50`: the notebook's title, with the sample size.
    pub fn title(&self) -> String {
        let (xs, ys): (Vec<f64>, Vec<f64>) = self.points.iter().copied().unzip();
        let r = pearson(&xs, &ys).map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}"));
        format!(
            "{} vs {}: r = {r}, n = {}",
            self.x_id,
            self.y_id,
            self.points.len()
        )
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Cannot fail for the bundled file; a failure would show as a drawing error.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Draws a histogram to `dir/stem.svg` and `dir/stem.png`; returns both paths.
pub fn histogram_chart(
    dir: &Path,
    stem: &str,
    data: &HistogramData,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    let (svg, png) = (
        dir.join(format!("{stem}.svg")),
        dir.join(format!("{stem}.png")),
    );
    draw_histogram(SVGBackend::new(&svg, SIZE).into_drawing_area(), data)
        .map_err(chart_error(&svg))?;
    draw_histogram(BitMapBackend::new(&png, SIZE).into_drawing_area(), data)
        .map_err(chart_error(&png))?;
    Ok(vec![svg, png])
}

/// Draws a scatter plot to `dir/stem.svg` and `dir/stem.png`; returns both paths.
pub fn scatter_chart(
    dir: &Path,
    stem: &str,
    data: &ScatterData,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font();
    let (svg, png) = (
        dir.join(format!("{stem}.svg")),
        dir.join(format!("{stem}.png")),
    );
    draw_scatter(SVGBackend::new(&svg, SIZE).into_drawing_area(), data)
        .map_err(chart_error(&svg))?;
    draw_scatter(BitMapBackend::new(&png, SIZE).into_drawing_area(), data)
        .map_err(chart_error(&png))?;
    Ok(vec![svg, png])
}

/// The scatter plot of [`scatter_chart`] as SVG text, for pages that inline their charts.
pub fn scatter_svg(data: &ScatterData) -> Result<String, String> {
    register_font();
    let mut svg = String::new();
    draw_scatter(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        data,
    )?;
    Ok(svg)
}

type DrawResult = Result<(), String>;

fn chart_error(path: &Path) -> impl FnOnce(String) -> ReportError {
    let path = path.to_path_buf();
    move |message| ReportError::Chart { path, message }
}

fn draw_histogram<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    data: &HistogramData,
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let n = data.bars.len().max(1);
    let top = data.bars.iter().map(|(_, h)| *h).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(&data.title, (FAMILY, 24))
        .margin(15)
        .x_label_area_size(if data.x_label.is_empty() { 30 } else { 55 })
        .y_label_area_size(60)
        .build_cartesian_2d((0..n as i32 - 1).into_segmented(), 0.0..top)
        .map_err(e)?;
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => data
            .bars
            .get(*i as usize)
            .map(|b| b.0.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_labels(n)
        .x_label_formatter(&label)
        .y_label_formatter(&|y: &f64| {
            // Counts are whole in sample mode; "12.0 answers" reads oddly.
            if y.fract() == 0.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .x_desc(&data.x_label)
        .y_desc(&data.y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(e)?;
    // Bars drawn in option order (plotters' `Histogram` sums its data in a HashMap, whose
    // order, and so the SVG's bytes, changes from one process to the next).
    chart
        .draw_series(data.bars.iter().enumerate().map(|(i, (_, h))| {
            let (x0, x1) = (
                SegmentValue::Exact(i as i32),
                SegmentValue::Exact(i as i32 + 1),
            );
            let mut bar = Rectangle::new([(x0, 0.0), (x1, *h)], BAR.filled());
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(e)?;
    root.present().map_err(e)
}

fn draw_scatter<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    data: &ScatterData,
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = data.points.iter().copied().unzip();
    let (x_range, x_jitter) = axis(&xs);
    let (y_range, y_jitter) = axis(&ys);
    let mut chart = ChartBuilder::on(&root)
        .caption(data.title(), (FAMILY, 24))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.clone(), y_range)
        .map_err(e)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_desc(&data.x_label)
        .y_desc(&data.y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(e)?;
    // Jitter only moves the dots, so that answers on the same grid point stay visible;
    // r and the line use the real values.
    let mut rng = ChaCha8Rng::seed_from_u64(data.jitter_seed);
    let mut jitter = |amount: f64| {
        if amount > 0.0 {
            rng.random_range(-amount..=amount)
        } else {
            0.0
        }
    };
    let dots: Vec<(f64, f64)> = data
        .points
        .iter()
        .map(|(x, y)| (x + jitter(x_jitter), y + jitter(y_jitter)))
        .collect();
    chart
        .draw_series(
            dots.into_iter()
                .map(|p| Circle::new(p, 4, BAR.mix(0.55).filled())),
        )
        .map_err(e)?;
    if let Some(line) = ols(&xs, &ys) {
        // Over the data only: a line past the last point would claim more than the fit.
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ends = [lo, hi].map(|x| (x, line.at(x)));
        chart
            .draw_series(LineSeries::new(ends, LINE.stroke_width(2)))
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// Axis range with a margin, and the jitter amplitude (2% of the data's range).
fn axis(values: &[f64]) -> (std::ops::Range<f64>, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0..1.0, 0.0);
    }
    let span = (hi - lo).max(1.0);
    (lo - 0.08 * span..hi + 0.08 * span, 0.02 * span)
}
