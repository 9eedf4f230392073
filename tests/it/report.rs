//! The HTML report in a real browser: runs of the eight-respondent study on the test model, in
//! sample and exact mode, their `report.html` and a page of both, opened by headless Chromium
//! (the system's package; `scripts/test` installs it where it can). The browser lays the page
//! out and a script reports what it drew: every chart present, with a size and with bars.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use serde_json::Value;

use crate::common::{gguf, personas, resumable_study, stdout_of};

/// The browser: `PERSONAS_TEST_BROWSER`, else the first of the usual names on the PATH. A
/// missing browser fails the test, loudly.
fn browser() -> PathBuf {
    if let Some(path) = std::env::var_os("PERSONAS_TEST_BROWSER") {
        return PathBuf::from(path);
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.map(|n| dir.join(n)))
        .find(|p| p.is_file())
        .expect("no Chromium for the report test: install it (Debian: apt-get install chromium; `scripts/test` does) or set PERSONAS_TEST_BROWSER")
}

/// What the browser drew for `page`: per inline SVG its laid-out width and height and the
/// number of its bars with a size. The page forbids scripts (its Content-Security-Policy), so
/// the check runs on a copy without that one meta line, with the checking script appended.
fn drawn(page: &Path) -> Vec<(f64, f64, usize)> {
    let html = std::fs::read_to_string(page).unwrap();
    let csp = html
        .lines()
        .find(|l| l.contains("Content-Security-Policy"))
        .expect("the page has a Content-Security-Policy");
    let check = r#"<script>
const charts = [...document.querySelectorAll('svg')].map(svg => {
  const box = svg.getBoundingClientRect();
  const bars = [...svg.querySelectorAll('.bar, rect, circle')].filter(b => {
    const r = b.getBoundingClientRect(); return r.width > 0 && r.height > 0; }).length;
  return [box.width, box.height, bars];
});
document.body.setAttribute('data-drawn', JSON.stringify(charts));
</script></body>"#;
    let copy = page.with_extension("check.html");
    std::fs::write(&copy, html.replace(csp, "").replace("</body>", check)).unwrap();
    let out = Process::new(browser())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", copy.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    let at = dom.find("data-drawn=\"").expect("the checking script ran") + "data-drawn=\"".len();
    let json = dom[at..dom[at..].find('"').unwrap() + at].replace("&quot;", "\"");
    let charts: Vec<Value> = serde_json::from_str(&json).unwrap();
    charts
        .iter()
        .map(|c| {
            (
                c[0].as_f64().unwrap(),
                c[1].as_f64().unwrap(),
                c[2].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

fn assert_all_drawn(page: &Path, expected: usize) {
    let charts = drawn(page);
    assert_eq!(
        charts.len(),
        expected,
        "{}: charts {charts:?}",
        page.display()
    );
    for (i, (w, h, bars)) in charts.iter().enumerate() {
        assert!(
            *w > 100.0 && *h > 100.0,
            "chart {i} of {} is {w} x {h}",
            page.display()
        );
        assert!(*bars > 0, "chart {i} of {} has no bars", page.display());
    }
}

#[test]
fn reports_open_in_a_browser_with_every_chart_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let study = resumable_study(dir.path());
    let run = |mode: &str| {
        let out = dir.path().join(mode);
        let stdout = stdout_of(
            personas()
                .args([
                    "run",
                    "--quiet",
                    "--model",
                    &gguf(),
                    "--mode",
                    mode,
                    "--out",
                ])
                .arg(&out)
                .arg(&study),
        );
        assert!(
            stdout.contains(&format!("report: {}", out.join("report.html").display())),
            "{stdout}"
        );
        out
    };
    let (sample, exact) = (run("sample"), run("exact"));

    // Two questions (trust, vote), each as a chart and by age (eight ages: four bands; names
    // are one per person, no breakdown); no constructs.
    for out in [&sample, &exact] {
        assert_all_drawn(&out.join("report.html"), 2 + 2);
    }
    let exact_page = std::fs::read_to_string(exact.join("report.html")).unwrap();
    assert!(exact_page.contains("whiskers: 95% interval of that mean"));
    assert!(exact_page.contains("probability outside the options before renormalizing"));
    let sample_page = std::fs::read_to_string(sample.join("report.html")).unwrap();
    assert!(sample_page.contains("whiskers: 95% Wilson interval"));
    assert!(sample_page.contains("20–27"), "age bands");

    // `personas report` draws the run's page again, byte for byte, from its journal.
    let again = dir.path().join("again.html");
    stdout_of(
        personas()
            .arg("report")
            .arg(&sample)
            .arg("--out")
            .arg(&again),
    );
    assert!(std::fs::read(&again).unwrap() == std::fs::read(sample.join("report.html")).unwrap());

    // Both runs on one page.
    let both = dir.path().join("both.html");
    stdout_of(
        personas()
            .arg("report")
            .arg(&sample)
            .arg(&exact)
            .arg("--out")
            .arg(&both),
    );
    assert_all_drawn(&both, 2 * (2 + 2));
}
