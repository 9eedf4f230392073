//! The HTML report in a real browser: runs of the eight-respondent study on the test model, in
//! sample and exact mode, their `report.html` and a page of both, opened by headless Chromium
//! (the system's package; `scripts/test` installs it where it can). The browser lays the page
//! out and a script reports what it drew: every chart present, with a size and with bars; and
//! the page as written logs nothing to the console (no script error, no blocked fetch).

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

/// `page` opened in headless Chromium with `extra` flags, its DOM dumped to stdout once the
/// page's scripts ran; fails the test if the browser fails.
fn headless(page: &Path, extra: &[&str]) -> std::process::Output {
    let out = Process::new(browser())
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(extra)
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser failed on {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    let out = headless(&copy, &[]);
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

/// What the page itself, as written (its Content-Security-Policy in force), logs to the
/// browser's console: script errors, and any fetch the policy blocks.
fn console_messages(page: &Path) -> Vec<String> {
    let out = headless(page, &["--enable-logging=stderr", "--v=0"]);
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect()
}

#[test]
fn console_messages_are_caught() {
    // A page breaking its own policy: the check that reports pages clean can see a breach.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    let policy = r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'">"#;
    std::fs::write(&page, format!("<!DOCTYPE html><html><head>{policy}</head><body><img src=\"http://127.0.0.1:9/x.png\"></body></html>")).unwrap();
    let messages = console_messages(&page);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "{messages:?}"
    );
}

fn assert_all_drawn(page: &Path, expected: usize) {
    let messages = console_messages(page);
    assert!(
        messages.is_empty(),
        "{}: console: {messages:?}",
        page.display()
    );
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

    // The same study with every question's options reversed: the page of both orders shows
    // each question's answers side by side.
    let text = std::fs::read_to_string(&study).unwrap();
    let reversed_study = dir.path().join("reversed.toml");
    std::fs::write(
        &reversed_study,
        text.replace(
            "keep_history = true",
            "keep_history = true\norder = \"reversed\"",
        ),
    )
    .unwrap();
    let reversed = dir.path().join("reversed");
    stdout_of(
        personas()
            .args([
                "run",
                "--quiet",
                "--model",
                &gguf(),
                "--mode",
                "exact",
                "--out",
            ])
            .arg(&reversed)
            .arg(&reversed_study),
    );
    let orders = dir.path().join("orders.html");
    stdout_of(
        personas()
            .arg("report")
            .arg(&exact)
            .arg(&reversed)
            .arg("--out")
            .arg(&orders),
    );
    assert_all_drawn(&orders, 2 * (2 + 2) + 2);
    let page = std::fs::read_to_string(&orders).unwrap();
    assert!(page.contains(">Order effects</h2>") && page.contains("options reversed"));
}

/// Eight twins of real people who said yes or no: the comparison's chart is drawn and
/// `compare.csv` holds a line for everyone and for every group.
#[test]
fn a_run_compared_with_real_twins_reports_the_distance() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,age,said\nAnn,20,1\nBob,27,0\nCy,34,1\nDee,41,0\nEve,48,0\nFay,55,1\nGus,62,0\nHal,69,0\n";
    std::fs::write(dir.path().join("people.csv"), csv).unwrap();
    let study = dir.path().join("study.toml");
    std::fs::write(
        &study,
        r#"[persona]
template = "You are {{ name }}, {{ age }} years old."
[population]
csv = "people.csv"
[sampling]
mode = "exact"
[[questions]]
id = "voted"
type = "yes_no"
text = "Did you vote in the last election?"
[compare]
csv = "people.csv"
baseline = "share"
[compare.questions.voted]
column = "said"
codes = { "1" = "Yes", "0" = "No" }
"#,
    )
    .unwrap();
    let out = dir.path().join("run");
    stdout_of(
        personas()
            .args(["run", "--quiet", "--model", &gguf(), "--out"])
            .arg(&out)
            .arg(&study),
    );
    // The question, by age (four bands) and by said, and simulated vs real.
    assert_all_drawn(&out.join("report.html"), 1 + 2 + 1);
    let table = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    let groups: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            "all",
            "age=20–27",
            "age=34–41",
            "age=48–55",
            "age=62–69",
            "said=0",
            "said=1"
        ]
    );
    let all: Vec<&str> = table.lines().nth(1).unwrap().split(',').collect();
    // 8 simulated and 8 real answers, 8 twin pairs; the real mean is 3 yes of 8.
    assert_eq!(
        (all[3], all[4], all[6], all[20]),
        ("8", "8", "0.375", "8"),
        "{table}"
    );
    // The share query: one expected count per option, shares that sum to 1, scored.
    let share: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("share.json")).unwrap()).unwrap();
    let shares = share[0]["shares"].as_array().unwrap();
    assert_eq!(
        (shares[0][0].as_str(), shares[1][0].as_str()),
        (Some("No"), Some("Yes"))
    );
    let sum: f64 = shares.iter().map(|s| s[1].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{share}");
    assert!(
        !all[17].is_empty() && !all[19].is_empty(),
        "share columns: {table}"
    );
}
