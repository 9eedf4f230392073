//! The page's own charts, written as SVG text: answer shares with their intervals, and
//! stacked shares by group. (Scatter plots come from plotters, as the chart files do.)

use std::fmt::Write as _;

use super::escape;

const FONT: &str = "font-family=\"sans-serif\"";
const BAR: &str = "#466eaa";
const INK: &str = "#333";

/// Bars of `shares` (0 to 1) under their `labels`, each with its 95% interval as a whisker.
pub fn bars(
    title: &str,
    labels: &[String],
    shares: &[f64],
    intervals: &[Option<(f64, f64)>],
) -> String {
    let n = labels.len().max(1);
    let slot = 64.0;
    let long = labels.iter().any(|l| l.chars().count() > 8);
    // Slanted labels reach left of their bar: room for the first one.
    let (left, top, plot_h) = (if long { 110.0 } else { 48.0 }, 34.0, 200.0);
    let bottom = if long { 110.0 } else { 40.0 };
    let width = (left + slot * n as f64 + 16.0).max(360.0);
    let height = top + plot_h + bottom;
    let highest = intervals
        .iter()
        .zip(shares)
        .map(|(i, s)| i.map_or(*s, |i| i.1))
        .fold(0.0, f64::max);
    let y_max = ((highest * 1.1 * 10.0).ceil() / 10.0).clamp(0.1, 1.0);
    let y = |v: f64| top + plot_h * (1.0 - v / y_max);
    let mut s = open(width, height, title);
    // Axis and ticks every 10% (every 20% above half).
    let step = if y_max > 0.5 { 0.2 } else { 0.1 };
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" {FONT}>{:.0}%</text>"##,
            width - 16.0,
            left - 6.0,
            y(tick) + 4.0,
            tick * 100.0,
            y = y(tick),
        );
        tick += step;
    }
    for (i, label) in labels.iter().enumerate() {
        let x = left + slot * i as f64;
        let share = shares.get(i).copied().unwrap_or(0.0);
        let _ = write!(
            s,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{BAR}"><title>{}: {:.1}%</title></rect>"#,
            x + 10.0,
            y(share),
            slot - 20.0,
            top + plot_h - y(share),
            escape(label),
            share * 100.0
        );
        if let Some(Some((lo, hi))) = intervals.get(i) {
            let cx = x + slot / 2.0;
            let _ = write!(
                s,
                r#"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}h12M{:.1} {:.1}h12" stroke="{INK}" fill="none"/>"#,
                y(lo.max(0.0)),
                y(hi.min(y_max)),
                cx - 6.0,
                y(lo.max(0.0)),
                cx - 6.0,
                y(hi.min(y_max)),
            );
        }
        let (lx, ly) = (x + slot / 2.0, top + plot_h + 16.0);
        let text = escape(&shorten(label, 24));
        if long {
            let _ = write!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})" font-size="11" {FONT}>{text}</text>"#
            );
        } else {
            let _ = write!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" font-size="12" {FONT}>{text}</text>"#
            );
        }
    }
    let _ = write!(
        s,
        r#"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="{INK}"/></svg>"#,
        width - 16.0,
        top + plot_h,
        top + plot_h
    );
    s
}

/// One 100% bar per group (`label`, `n`, shares of each of `legend`), with the legend below;
/// `ordinal` colours the options from one end of a scale to the other.
pub fn stacked(
    title: &str,
    groups: &[(String, usize, Vec<f64>)],
    legend: &[String],
    ordinal: bool,
) -> String {
    let (left, top, bar_w, row_h) = (150.0, 34.0, 420.0, 24.0);
    let legend_rows = legend.len().div_ceil(4) as f64;
    let width = left + bar_w + 60.0;
    let height = top + row_h * groups.len() as f64 + 16.0 + 18.0 * legend_rows;
    let mut s = open(width, height, title);
    for (g, (label, n, shares)) in groups.iter().enumerate() {
        let y = top + row_h * g as f64;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12" {FONT}>{} (n = {n})</text>"#,
            left - 8.0,
            y + 15.0,
            escape(&shorten(label, 16))
        );
        let total: f64 = shares.iter().sum();
        let mut x = left;
        for (i, share) in shares.iter().enumerate() {
            let w = if total > 0.0 {
                bar_w * share / total
            } else {
                0.0
            };
            let _ = write!(
                s,
                r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {:.1}%</title></rect>"#,
                y + 2.0,
                row_h - 4.0,
                colour(i, legend.len(), ordinal),
                escape(&legend[i]),
                share * 100.0
            );
            x += w;
        }
    }
    let ly = top + row_h * groups.len() as f64 + 14.0;
    for (i, name) in legend.iter().enumerate() {
        let (x, y) = (left + 110.0 * (i % 4) as f64, ly + 18.0 * (i / 4) as f64);
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11" {FONT}>{}</text>"#,
            y - 10.0,
            colour(i, legend.len(), ordinal),
            x + 16.0,
            y,
            escape(&shorten(name, 14))
        );
    }
    s.push_str("</svg>");
    s
}

/// Two distributions side by side under each label, `a` in blue and `b` in orange, each
/// named in the legend.
pub fn paired(title: &str, labels: &[String], a: (&str, &[f64]), b: (&str, &[f64])) -> String {
    const REAL: &str = "#f28e2b";
    let ((a_name, simulated), (b_name, real)) = (a, b);
    let n = labels.len().max(1);
    let slot = 64.0;
    let long = labels.iter().any(|l| l.chars().count() > 8);
    let (left, top, plot_h) = (if long { 110.0 } else { 48.0 }, 50.0, 200.0);
    let bottom = if long { 110.0 } else { 40.0 };
    let width = (left + slot * n as f64 + 16.0).max(360.0);
    let height = top + plot_h + bottom;
    let highest = simulated.iter().chain(real).copied().fold(0.0, f64::max);
    let y_max = ((highest * 1.1 * 10.0).ceil() / 10.0).clamp(0.1, 1.0);
    let y = |v: f64| top + plot_h * (1.0 - v / y_max);
    let mut s = open(width, height, title);
    for (k, (name, colour)) in [(a_name, BAR), (b_name, REAL)].iter().enumerate() {
        let x = left + 180.0 * k as f64;
        let name = escape(&shorten(name, 26));
        let _ = write!(
            s,
            r#"<rect x="{x}" y="28" width="12" height="12" fill="{colour}"/><text x="{}" y="38" font-size="12" {FONT}>{name}</text>"#,
            x + 16.0
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let x = left + slot * i as f64;
        for (k, (shares, colour)) in [(simulated, BAR), (real, REAL)].iter().enumerate() {
            let share = shares.get(i).copied().unwrap_or(0.0);
            let _ = write!(
                s,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="22" height="{:.1}" fill="{colour}"><title>{}: {:.1}%</title></rect>"#,
                x + 10.0 + 22.0 * k as f64,
                y(share),
                top + plot_h - y(share),
                escape(label),
                share * 100.0
            );
        }
        let (lx, ly) = (x + slot / 2.0, top + plot_h + 16.0);
        let text = escape(&shorten(label, 24));
        let turn = if long {
            format!(r#" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})""#)
        } else {
            r#" text-anchor="middle""#.to_string()
        };
        let _ = write!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}"{turn} font-size="11" {FONT}>{text}</text>"#
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="11" {FONT}>{:.0}%</text><line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="{INK}"/></svg>"#,
        left - 6.0,
        top + 4.0,
        y_max * 100.0,
        width - 16.0,
        top + plot_h,
        top + plot_h
    );
    s
}

fn open(width: f64, height: f64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}"><title>{t}</title><text x="8" y="20" font-size="14" font-weight="bold" {FONT}>{t}</text>"#,
        t = escape(title)
    )
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// Option `i` of `n`: a red-grey-blue ramp for ordered options (ColorBrewer's RdBu ends), the
/// ten Tableau colours for unordered ones.
fn colour(i: usize, n: usize, ordinal: bool) -> String {
    const TABLEAU: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    if !ordinal || n < 2 {
        return TABLEAU[i % TABLEAU.len()].to_string();
    }
    let t = i as f64 / (n - 1) as f64;
    let (from, to) = if t < 0.5 {
        ([178.0, 24.0, 43.0], [235.0, 235.0, 235.0])
    } else {
        ([235.0, 235.0, 235.0], [33.0, 102.0, 172.0])
    };
    let u = if t < 0.5 { t * 2.0 } else { t * 2.0 - 1.0 };
    let c: Vec<u8> = (0..3)
        .map(|k| (from[k] + (to[k] - from[k]) * u).round() as u8)
        .collect();
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}
