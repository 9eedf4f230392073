//! Tests of the report files on tiny studies: exact CSV contents, charts that open,
//! and the terminal summary.

use std::path::Path;

use super::data::fmt_num;
use super::*;
use crate::study::{parse, Person, Study};

const STUDY: &str = r#"seed = 3

[persona]
template = "You are {{ name }}."

[population]
people = [{ name = "Ann", age = 30 }, { name = "Bob", age = 50 }]

[[questions]]
id = "concern"
type = "scale"
min = 1
max = 7
min_label = "Strongly Disagree"
max_label = "Strongly Agree"
text = "I worry."

[[questions]]
id = "willing"
type = "scale"
min = 1
max = 7
text = "I share."

[[questions]]
id = "party"
type = "choice"
options = [{ code = "A", label = "Democrat" }, { code = "B", label = "Republican" }]
text = "Which party?"

[[constructs]]
id = "PC"
label = "Privacy concern"
items = ["concern"]

[[constructs]]
id = "WI"
items = ["willing", "concern"]
reverse = ["concern"]
"#;

fn study(extra: &str) -> (Study, Vec<Person>) {
    let study = parse(&format!("{STUDY}{extra}"), Path::new("study.toml")).unwrap();
    let people = study.population().unwrap();
    (study, people)
}

fn record(respondent: usize, sample: usize, question: &str, answer: &str) -> Record {
    Record {
        respondent,
        sample,
        question_id: question.into(),
        answer: answer.into(),
        probability: None,
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// Ann answers twice, Bob once; Bob's party reply was unreadable.
fn sampled_report(dir: &Path) -> Report {
    let (study, people) = study("");
    let mut report = Report::create(dir, &study).unwrap();
    let ann = [
        record(1, 1, "concern", "7"),
        record(1, 1, "willing", "2"),
        record(1, 1, "party", "A"),
        record(1, 2, "concern", "6"),
        record(1, 2, "willing", "3"),
        record(1, 2, "party", "B"),
    ];
    report.add_respondent(&people[0], &ann, &[]).unwrap();
    let bob = [
        record(2, 1, "concern", "2"),
        record(2, 1, "willing", "6"),
        record(2, 1, "party", ""),
    ];
    report.add_respondent(&people[1], &bob, &[]).unwrap();
    report
}

#[test]
fn sampled_answers_are_written_wide_and_long() {
    let dir = tempfile::tempdir().unwrap();
    let report = sampled_report(dir.path());
    // Written before finish: an interrupted run keeps these rows.
    assert_eq!(
        read(dir.path(), "responses.csv"),
        "respondent,sample,name,age,concern,willing,party,PC,WI\n\
         1,1,Ann,30,7,2,A,7,1.5\n\
         1,2,Ann,30,6,3,B,6,2.5\n\
         2,1,Bob,50,2,6,,2,6\n"
    );
    let answers = read(dir.path(), "answers.csv");
    assert!(answers.starts_with(
        "respondent,sample,question,answer,probability\n1,1,concern,7,\n1,1,willing,2,\n"
    ));
    assert_eq!(answers.lines().count(), 10);
    assert!(!dir.path().join("distributions.csv").exists());
    drop(report);
}

#[test]
fn exact_mode_writes_distributions_and_expected_values() {
    let dir = tempfile::tempdir().unwrap();
    let (study, people) = study("\n[sampling]\nmode = \"exact\"\n");
    let mut report = Report::create(dir.path(), &study).unwrap();
    let dist = |q: &str, options: &[(&str, f64)]| Distribution {
        respondent: 1,
        question_id: q.into(),
        options: options.iter().map(|(o, p)| (o.to_string(), *p)).collect(),
        outside: None,
    };
    let scale = |p6: f64| {
        [
            ("1", 0.0),
            ("2", 0.0),
            ("3", 0.0),
            ("4", 0.0),
            ("5", 1.0 - p6),
            ("6", p6),
            ("7", 0.0),
        ]
    };
    let distributions = [
        dist("concern", &scale(0.25)),
        dist("willing", &scale(0.5)),
        dist("party", &[("A", 0.2), ("B", 0.8)]),
    ];
    report
        .add_respondent(&people[0], &[], &distributions)
        .unwrap();
    // E[concern] = 5.25, E[willing] = 5.5, WI = (5.5 + (8 - 5.25)) / 2.
    assert_eq!(
        read(dir.path(), "responses.csv"),
        "respondent,sample,name,age,concern,willing,party,PC,WI\n1,,Ann,30,5.25,5.5,B,5.25,4.125\n"
    );
    let distributions = read(dir.path(), "distributions.csv");
    assert_eq!(distributions.lines().count(), 1 + 7 + 7 + 2);
    assert!(distributions.contains("\n1,concern,5,0.75\n1,concern,6,0.25\n"));
    assert!(distributions.ends_with("1,party,A,0.2\n1,party,B,0.8\n"));
    assert!(read(dir.path(), "answers.csv").contains("\n1,,party,B,0.8\n"));
    let summary = report.summary();
    assert!(summary.contains("exact (expected values)"), "{summary}");
}

#[test]
fn charts_are_valid_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let report = sampled_report(dir.path());
    let (_, charts) = report.finish().unwrap();
    let names: Vec<String> = charts
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "hist_concern.svg",
            "hist_concern.png",
            "hist_willing.svg",
            "hist_willing.png",
            "hist_party.svg",
            "hist_party.png",
            "scatter_PC_WI.svg",
            "scatter_PC_WI.png"
        ]
    );
    for chart in &charts {
        let bytes = std::fs::read(chart).unwrap();
        if chart.extension().unwrap() == "png" {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", chart.display());
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{}",
                chart.display()
            );
        }
    }
    let scatter = std::fs::read_to_string(dir.path().join("charts/scatter_PC_WI.svg")).unwrap();
    // PC = 7, 6, 2 and WI = 1.5, 2.5, 6: r = -0.9997.
    assert!(
        scatter.contains("PC vs WI: r = -1.00, n = 3"),
        "title missing"
    );
    assert!(scatter.contains("Privacy concern (PC)"));
    let histogram = std::fs::read_to_string(dir.path().join("charts/hist_party.svg")).unwrap();
    assert!(histogram.contains("A: Democrat") && histogram.contains("party (n = 3)"));
}

#[test]
fn summary_shows_questions_and_correlations() {
    let dir = tempfile::tempdir().unwrap();
    let report = sampled_report(dir.path());
    insta::assert_snapshot!("summary", report.summary());
}

#[test]
fn manifest_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (study, _) = study("");
    let report = Report::create(dir.path(), &study).unwrap();
    let mut manifest = Manifest::new(&study);
    manifest.counts.respondents = 2;
    manifest.model = Some(ModelInfo {
        preset: Some("smollm2-135m".into()),
        file: FileInfo {
            path: "model.gguf".into(),
            sha256: "ab".repeat(32),
        },
        kernels: Some("avx512".into()),
        cpu_features: vec!["avx512f".into(), "avx512vnni".into()],
        blas: Some("openblas (pkg-config: /usr/lib)".into()),
    });
    report.write_manifest(&manifest).unwrap();
    let text = read(dir.path(), "manifest.json");
    let back: Manifest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, manifest);
    assert_eq!(back.study.sha256, study.sha256);
    assert!(text.contains("\"mode\": \"sample\""));
    assert!(!dir.path().join("manifest.json.tmp").exists());
}

#[test]
fn unknown_question_is_a_runner_bug() {
    let dir = tempfile::tempdir().unwrap();
    let (study, people) = study("");
    let mut report = Report::create(dir.path(), &study).unwrap();
    let err = report
        .add_respondent(&people[0], &[record(1, 1, "nope", "1")], &[])
        .unwrap_err();
    assert_eq!(err.to_string(), "bad report input: unknown question `nope`");
}

#[test]
fn numbers_print_short() {
    assert_eq!(fmt_num(6.75), "6.75");
    assert_eq!(fmt_num(1.0 / 3.0), "0.333333");
    assert_eq!(fmt_num(-0.0000001), "0");
    assert_eq!(fmt_num(f64::NAN), "");
}
