//! Studies end to end on the test model, through the library: every question type, exact and
//! sampled answers agreeing, results independent of the batch size, and an interrupted run
//! keeping what it finished.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use personas::chat::Message;
use personas::engine::score::{reply_options, score};
use personas::engine::session::{model_template, render_ids};
use personas::model::{Model, ModelFiles};
use personas::runner::{run, RunOutcome, RunSettings};
use personas::study::{self, Study};

fn model() -> Model {
    let files = ModelFiles::Gguf {
        path: common::test_gguf(),
        tokenizer: None,
    };
    // As the CLI does by default: personas' fastest kernels on this CPU.
    let model = Model::load(&files, &candle_core::Device::Cpu, None, Default::default()).unwrap();
    assert_eq!(
        model.llama.packed_count(),
        211,
        "every projection and the head"
    );
    model
}

const PEOPLE: &str = r#"
seed = 5

[persona]
template = "You are {{ name }}, a {{ age }}-year-old {{ job }}."

[population]
people = [
  { name = "Ann", age = 34, job = "nurse" },
  { name = "Bob", age = 61, job = "farmer" },
  { name = "Cy", age = 23, job = "student" },
]
"#;

const QUESTIONS: &str = r#"
[[questions]]
id = "trust"
type = "scale"
min = 1
max = 5
min_label = "not at all"
max_label = "completely"
text = "How much do you trust your neighbours?"

[[questions]]
id = "stance"
type = "choice"
text = "What is your political stance?"
options = [{ code = "A", label = "Democrat" }, { code = "B", label = "Republican" }]

[[questions]]
id = "vote"
type = "yes_no"
text = "Did you vote in the last election?"

[[questions]]
id = "books"
type = "number"
min = 0
max = 30
text = "How many books did you read last year?"
"#;

const TEXT_QUESTION: &str = r#"
[[questions]]
id = "hobby"
type = "text"
max_tokens = 6
text = "What is your favourite hobby?"
"#;

fn study(dir: &Path, extra: &str) -> Study {
    let text = format!("{PEOPLE}{extra}{QUESTIONS}");
    let path = dir.join("study.toml");
    std::fs::write(&path, &text).unwrap();
    study::load(&path).unwrap()
}

fn run_into(model: &Model, study: &Study, out: PathBuf, batch: usize) -> RunOutcome {
    let settings = RunSettings {
        out_dir: out,
        batch,
        progress: false,
        resume: None,
        retry_failed: false,
        shard: None,
    };
    run(study, model, None, &settings, &AtomicBool::new(false), 0.0).unwrap()
}

fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.records().map(|r| r.unwrap()).collect()
}

fn header(path: &Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.headers().unwrap().iter().map(String::from).collect()
}

fn valid(question: &str, answer: &str) -> bool {
    match question {
        "trust" => matches!(answer, "1" | "2" | "3" | "4" | "5"),
        "stance" => matches!(answer, "A" | "B"),
        "vote" => matches!(answer, "Yes" | "No"),
        "books" => answer.parse::<u32>().is_ok_and(|n| n <= 30),
        "hobby" => !answer.is_empty(),
        other => panic!("unexpected question {other}"),
    }
}

#[test]
fn every_question_type_sampled_is_valid_and_identical_whatever_the_batch() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{QUESTIONS}{TEXT_QUESTION}");
    let path = dir.path().join("study.toml");
    std::fs::write(&path, format!("{PEOPLE}\n[sampling]\nsamples = 4\n{text}")).unwrap();
    let s = study::load(&path).unwrap();

    let wide = run_into(&model, &s, dir.path().join("wide"), 64);
    assert_eq!((wide.respondents, wide.answers), (3, 3 * 4 * 5));
    assert!(!wide.interrupted);
    let answers = dir.path().join("wide/answers.csv");
    let rows = csv_rows(&answers);
    assert_eq!(rows.len(), 60);
    for r in &rows {
        assert!(valid(&r[2], &r[3]), "invalid answer {:?}", r);
    }
    // Answers vary across samples (the seed streams differ per sample), not all one option.
    let trust: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|r| &r[2] == "trust")
        .map(|r| r.get(3).unwrap())
        .collect();
    assert!(
        trust.len() > 1,
        "12 draws of a 5-point scale all gave {trust:?}"
    );
    // Two-digit numbers are reachable although "1" is a prefix of "10".
    assert!(rows
        .iter()
        .any(|r| &r[2] == "books" && r[3].parse::<u32>().unwrap() >= 10));
    let responses = dir.path().join("wide/responses.csv");
    assert_eq!(
        header(&responses),
        [
            "respondent",
            "sample",
            "name",
            "age",
            "job",
            "trust",
            "stance",
            "vote",
            "books",
            "hobby"
        ]
    );
    assert_eq!(csv_rows(&responses).len(), 12);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("wide/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["counts"]["answers"], 60);
    assert_eq!(manifest["counts"]["failed"], 0);
    assert_eq!(manifest["counts"]["skipped"], 0);
    assert_eq!(manifest["counts"]["population"], 3);
    // The work the run computed: every answer took at least one token through the layers
    // (106,168,320 multiply-adds in the test model).
    let work = manifest["timings"]["multiply_adds"].as_u64().unwrap();
    assert!(
        work > 60 * model.llama.multiply_adds_per_token(false),
        "{work}"
    );
    assert_eq!(model.llama.multiply_adds_per_token(false), 106_168_320);
    assert!(dir.path().join("wide/charts").read_dir().unwrap().count() >= 8);

    // Batches of 1: other batch neighbours, other padding, the same bytes.
    run_into(&model, &s, dir.path().join("narrow"), 1);
    for file in ["answers.csv", "responses.csv"] {
        let a = std::fs::read(dir.path().join("wide").join(file)).unwrap();
        let b = std::fs::read(dir.path().join("narrow").join(file)).unwrap();
        assert!(a == b, "{file} differs between --batch 64 and --batch 1");
    }
}

#[test]
fn exact_mode_equals_scoring_each_prompt_alone_and_ignores_the_batch() {
    exact_equals_alone("");
}

/// Options in a random order per respondent: the runner asks each respondent the order its
/// seed draws (scored alone from `question_prompt`, the same numbers), whatever the batch.
#[test]
fn options_in_random_order_are_asked_as_drawn_per_respondent() {
    let model_free = study(
        tempfile::tempdir().unwrap().path(),
        "\n[ask]\norder = \"random\"\n",
    );
    let people = model_free.population().unwrap();
    let shown: Vec<String> = people
        .iter()
        .flat_map(|p| {
            (0..3)
                .map(|qi| model_free.question_prompt(p, qi))
                .collect::<Vec<_>>()
        })
        .collect();
    let fixed: Vec<String> = people
        .iter()
        .flat_map(|_| model_free.questions[..3].iter().map(|q| q.prompt()))
        .collect();
    assert!(
        shown != fixed,
        "seed 5 draws at least one order that is not the study's"
    );
    assert!(
        shown
            .iter()
            .any(|p| p.contains("from 5 (completely) to 1 (not at all)"))
            || shown
                .iter()
                .any(|p| p.contains("B (Republican) or A (Democrat)"))
    );
    exact_equals_alone("\n[ask]\norder = \"random\"\n");
}

/// Options asked in every order (`all`): each respondent's distribution is the mean of the
/// distributions of every order, each scored alone.
#[test]
fn options_in_all_orders_average_the_orders_scored_alone() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let s = study(
        dir.path(),
        "\n[ask]\norder = \"all\"\n[sampling]\nmode = \"exact\"\n",
    );
    let slots = s.question_slots();
    // trust (a scale) and vote (yes/no) both ways, stance's two options both ways, books once.
    assert_eq!(slots.len(), 2 + 2 + 2 + 1);
    run_into(&model, &s, dir.path().join("a"), 64);
    let rows = csv_rows(&dir.path().join("a/distributions.csv"));
    let template = model_template(&model).unwrap();
    for person in &s.population().unwrap() {
        for (qi, q) in s.questions.iter().enumerate().take(3) {
            let options = q.options().unwrap();
            let toks = reply_options(&model.tokenizer, &options).unwrap();
            let mut mean = vec![0.0; options.len()];
            let shown: Vec<&Vec<usize>> = slots
                .iter()
                .filter(|(i, _)| *i == qi)
                .filter_map(|(_, o)| o.as_ref())
                .collect();
            assert_eq!(shown.len(), 2);
            for order in &shown {
                let mut messages: Vec<Message> = s.opening(person);
                messages.push(Message::user(q.prompt_shown(order)));
                let ids = render_ids(&model, &template, &messages, true).unwrap();
                let alone = score(&model.llama, &ids, &toks).unwrap();
                for (m, o) in mean.iter_mut().zip(&alone.options) {
                    *m += o.probability / shown.len() as f64;
                }
            }
            for (option, m) in options.iter().zip(&mean) {
                let row = rows
                    .iter()
                    .find(|r| {
                        r[0] == person.id.to_string()
                            && &r[1] == q.id.as_str()
                            && &r[2] == option.as_str()
                    })
                    .unwrap();
                let batched: f64 = row[3].parse().unwrap();
                assert!(
                    (batched - m).abs() < 1e-4,
                    "{} {} {option}: {batched} vs {m}",
                    person.id,
                    q.id
                );
            }
        }
    }
}

fn exact_equals_alone(extra: &str) {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let s = study(
        dir.path(),
        &format!("{extra}\n[sampling]\nmode = \"exact\"\n"),
    );
    let out = run_into(&model, &s, dir.path().join("a"), 64);
    assert_eq!(out.respondents, 3);
    run_into(&model, &s, dir.path().join("b"), 3);
    let a = std::fs::read(dir.path().join("a/distributions.csv")).unwrap();
    let b = std::fs::read(dir.path().join("b/distributions.csv")).unwrap();
    assert!(
        a == b,
        "distributions differ between --batch 64 and --batch 3"
    );

    // Each (respondent, question) scored on its own, one prompt at a time, no batch at all.
    let rows = csv_rows(&dir.path().join("a/distributions.csv"));
    let template = model_template(&model).unwrap();
    let people = s.population().unwrap();
    let mut checked = 0;
    for person in &people {
        for (qi, q) in s.questions.iter().enumerate() {
            let mut messages: Vec<Message> = s.opening(person);
            messages.push(Message::user(s.question_prompt(person, qi)));
            let ids = render_ids(&model, &template, &messages, true).unwrap();
            let options = q.options().unwrap();
            let toks = reply_options(&model.tokenizer, &options).unwrap();
            let alone = score(&model.llama, &ids, &toks).unwrap();
            let sum: f64 = alone.options.iter().map(|o| o.probability).sum();
            assert!((sum - 1.0).abs() < 1e-9);
            for o in &alone.options {
                let row = rows
                    .iter()
                    .find(|r| {
                        r[0] == person.id.to_string() && &r[1] == q.id.as_str() && r[2] == o.option
                    })
                    .unwrap_or_else(|| panic!("no row for {} {} {}", person.id, q.id, o.option));
                let batched: f64 = row[3].parse().unwrap();
                // The CSV keeps 6 significant digits; batching changes float rounding only.
                assert!(
                    (batched - o.probability).abs() < 1e-4,
                    "{} {} {}: batched {batched} alone {}",
                    person.id,
                    q.id,
                    o.option,
                    o.probability
                );
                checked += 1;
            }
        }
    }
    // 5 + 2 + 2 + 31 options for each of 3 people, the 31 with multi-token numbers ("10"),
    // scored up to the end of the turn since "1" is a prefix of "10".
    assert_eq!(checked, 3 * 40);
}

/// 99.9th percentiles of chi-square with 1..=30 degrees of freedom.
const CHI2_999: [f64; 30] = [
    10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59, 31.26, 32.91, 34.53,
    36.12, 37.70, 39.25, 40.79, 42.31, 43.82, 45.31, 46.80, 48.27, 49.73, 51.18, 52.62, 54.05,
    55.48, 56.89, 58.30, 59.70,
];

/// Pearson chi-square of one question's sampled answers against its exact distribution, over
/// the options the model gives at least 1% (the rest pooled); returns (chi2, degrees of freedom).
fn chi_square(
    draws: &[csv::StringRecord],
    dist: &[csv::StringRecord],
    question: &str,
) -> (f64, usize) {
    let draws: Vec<_> = draws.iter().filter(|d| &d[2] == question).collect();
    let n = draws.len() as f64;
    let mut chi2 = 0.0;
    let mut cells = 0;
    let (mut pooled_p, mut pooled_obs) = (0.0, 0.0);
    for row in dist.iter().filter(|r| &r[1] == question) {
        let p: f64 = row[3].parse().unwrap();
        let obs = draws.iter().filter(|d| d[3] == row[2]).count() as f64;
        if p >= 0.01 {
            chi2 += (obs - n * p).powi(2) / (n * p);
            cells += 1;
        } else {
            pooled_p += p;
            pooled_obs += obs;
        }
    }
    if pooled_p > 0.0 {
        chi2 += (pooled_obs - n * pooled_p).powi(2) / (n * pooled_p);
        cells += 1;
    }
    assert!(
        cells >= 2,
        "{question}: the model put everything on one option"
    );
    (chi2, cells - 1)
}

#[test]
fn sampled_answers_follow_the_exact_distribution() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    // One-token options (drawn straight from the prompt's logits) and options of one or two
    // tokens where "1" is a prefix of "10".."12" (drawn by the constrained decoder, token by
    // token, ended by the end of the turn).
    let one = r#"
[[questions]]
id = "trust"
type = "scale"
min = 1
max = 5
text = "How much do you trust your neighbours?"
[[questions]]
id = "month"
type = "scale"
min = 1
max = 12
text = "In which month of the year (1 to 12) were you born?"
"#;
    follows_the_exact_distribution(&model, dir.path(), one, 10_000, &["trust", "month"]);
}

/// One respondent, for the distribution checks.
const DANA: &str = r#"
seed = 11
[persona]
template = "You are {{ name }}."
[population]
people = [{ name = "Dana" }]
"#;

/// Runs DANA on the questions `one` sampled `samples` times and in exact mode, and checks each
/// of `questions`' draws against its exact distribution (Pearson chi-square at 99.9%; the draws
/// are seeded, so this is a fixed check, not a flaky one).
fn follows_the_exact_distribution(
    model: &Model,
    dir: &Path,
    one: &str,
    samples: usize,
    questions: &[&str],
) {
    let path = dir.join("one.toml");
    std::fs::write(
        &path,
        format!("{DANA}{one}\n[sampling]\nsamples = {samples}\n"),
    )
    .unwrap();
    run_into(model, &study::load(&path).unwrap(), dir.join("s"), 256);
    std::fs::write(
        &path,
        format!("{DANA}{one}\n[sampling]\nmode = \"exact\"\n"),
    )
    .unwrap();
    run_into(model, &study::load(&path).unwrap(), dir.join("e"), 64);

    let draws = csv_rows(&dir.join("s/answers.csv"));
    assert_eq!(draws.len(), questions.len() * samples);
    let dist = csv_rows(&dir.join("e/distributions.csv"));
    for question in questions {
        let (chi2, df) = chi_square(&draws, &dist, question);
        assert!(
            chi2 < CHI2_999[df - 1],
            "{question}: chi-square {chi2:.2} with {df} degrees of freedom"
        );
        eprintln!("{question}: chi-square {chi2:.2}, {df} degrees of freedom");
    }
}

#[test]
fn an_interrupted_run_keeps_every_finished_respondent() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    // 20 people, 4 questions: respondents go in groups of 8 (32 prompts).
    let text = format!(
        "seed = 3\n[persona]\ntemplate = \"You are {{{{ age }}}} years old.\"\n[population]\nsize = 20\n[population.draw]\nage = {{ dist = \"uniform_int\", min = 18, max = 80 }}\n[sampling]\nsamples = 2\n{QUESTIONS}"
    );
    let path = dir.path().join("many.toml");
    std::fs::write(&path, text).unwrap();
    let s = study::load(&path).unwrap();
    let out = dir.path().join("out");
    let responses = out.join("responses.csv");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let watch = responses.clone();
    // Ctrl-C as soon as the first respondent is on disk.
    let watcher = std::thread::spawn(move || {
        for _ in 0..6000 {
            let lines = std::fs::read_to_string(&watch).map_or(0, |t| t.lines().count());
            if lines > 1 {
                flag.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    let settings = RunSettings {
        out_dir: out.clone(),
        batch: 64,
        progress: false,
        resume: None,
        retry_failed: false,
        shard: None,
    };
    let outcome = run(&s, &model, None, &settings, &stop, 0.0).unwrap();
    watcher.join().unwrap();
    assert!(outcome.interrupted);
    assert!(
        outcome.respondents >= 8 && outcome.respondents < 20,
        "{outcome:?}"
    );
    let rows = csv_rows(&responses);
    assert_eq!(rows.len(), outcome.respondents * 2);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["counts"]["respondents"], outcome.respondents);
    assert_eq!(manifest["counts"]["skipped"], 20 - outcome.respondents);
    assert_eq!(outcome.skipped, 20 - outcome.respondents);
    assert_eq!(manifest["interrupted"], true);
}

/// Every ask mode in both sampling modes: `[ask]` settings and `[sampling] mode`.
const ASKS: [(&str, &str); 6] = [
    ("mode = \"separate\"", "sample"),
    ("mode = \"separate\"", "exact"),
    ("mode = \"separate\"\nkeep_history = true", "sample"),
    ("mode = \"separate\"\nkeep_history = true", "exact"),
    ("mode = \"together\"", "sample"),
    ("mode = \"together\"", "exact"),
];

/// Runs PEOPLE on `questions` with `[ask]` settings `ask` and sampling `mode`, in a directory of
/// `dir` of its own; returns the outcome and that directory.
fn run_asked(
    model: &Model,
    dir: &Path,
    ask: &str,
    mode: &str,
    samples: usize,
    questions: &str,
) -> (RunOutcome, PathBuf) {
    let text = format!(
        "{PEOPLE}\n[ask]\n{ask}\n[sampling]\nmode = \"{mode}\"\nsamples = {samples}\n{questions}"
    );
    let path = dir.join("s.toml");
    std::fs::write(&path, text).unwrap();
    let s = study::load(&path).unwrap();
    let out = dir.join(format!("{}-{mode}", ask.len()));
    (run_into(model, &s, out.clone(), 64), out)
}

#[test]
fn history_and_together_modes_answer_every_question_in_both_modes() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    // Separate mode without history is covered above.
    for &(ask, mode) in &ASKS[2..] {
        let (outcome, out) = run_asked(&model, dir.path(), ask, mode, 2, QUESTIONS);
        assert_eq!(outcome.respondents, 3, "{ask} {mode}");
        let rows = csv_rows(&out.join("answers.csv"));
        let drawn: Vec<_> = rows.iter().filter(|r| !r[1].is_empty()).collect();
        // 3 people x 2 samples x 4 questions, every one valid.
        assert_eq!(drawn.len(), 24, "{ask} {mode}");
        for r in &drawn {
            assert!(valid(&r[2], &r[3]), "{ask} {mode}: invalid answer {r:?}");
        }
        if mode == "exact" {
            let dists = csv_rows(&out.join("distributions.csv"));
            // 5 + 2 + 2 + 31 options per person.
            assert_eq!(dists.len(), 3 * 40, "{ask} {mode}");
        }
    }
}

/// A number question too wide to list: answers are whole numbers in range in every ask mode,
/// sampled or exact, and exact distributions account for all their probability.
const WIDE_NUMBERS: &str = r#"
[[questions]]
id = "guess"
type = "number"
min = 0
max = 120
text = "How old do you think your oldest neighbour is?"

[[questions]]
id = "debt"
type = "number"
min = -500
max = 99999
bins = [[-500, -1], [0, 9], [10, 99999]]
text = "What is your account balance in dollars?"
"#;

fn in_range(question: &str, answer: &str, exact: bool) -> bool {
    let n = answer.parse::<i64>();
    match question {
        "guess" => n.is_ok_and(|n| (0..=120).contains(&n)),
        "debt" if exact => matches!(answer, "-500 to -1" | "0-9" | "10-99999"),
        "debt" => n.is_ok_and(|n| (-500..=99999).contains(&n)),
        other => panic!("unexpected question {other}"),
    }
}

#[test]
fn wide_numbers_are_whole_numbers_in_range_in_every_mode() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    for &(ask, mode) in &ASKS {
        let (outcome, out) = run_asked(&model, dir.path(), ask, mode, 3, WIDE_NUMBERS);
        assert_eq!(
            (outcome.respondents, outcome.failed.len()),
            (3, 0),
            "{ask} {mode}"
        );
        let rows = csv_rows(&out.join("answers.csv"));
        // Drawn answers (exact mode also writes each question's most likely one, sample empty).
        let rows: Vec<_> = rows.into_iter().filter(|r| !r[1].is_empty()).collect();
        assert_eq!(rows.len(), 3 * 3 * 2, "{ask} {mode}");
        for r in &rows {
            assert!(
                in_range(&r[2], &r[3], mode == "exact"),
                "{ask} {mode}: invalid answer {r:?}"
            );
        }
        if mode == "exact" {
            let dists = csv_rows(&out.join("distributions.csv"));
            for person in ["1", "2", "3"] {
                let of = |q: &str| -> Vec<(String, f64)> {
                    dists
                        .iter()
                        .filter(|r| &r[0] == person && &r[1] == q)
                        .map(|r| (r[2].to_string(), r[3].parse().unwrap()))
                        .collect()
                };
                // One probability per value, every value resolved.
                let guess = of("guess");
                assert_eq!(guess.len(), 121, "{ask} {mode}");
                let total: f64 = guess.iter().map(|(_, p)| p).sum();
                assert!((total - 1.0).abs() < 1e-3, "{ask} {mode}: sums to {total}");
                // The bins, and whatever the walk left open, make up the whole answer.
                let debt = of("debt");
                let labels: Vec<&str> = debt.iter().map(|(l, _)| l.as_str()).take(3).collect();
                assert_eq!(labels, ["-500 to -1", "0-9", "10-99999"], "{ask} {mode}");
                assert!(debt.len() == 3 || debt[3].0 == "(unresolved)", "{debt:?}");
                let total: f64 = debt.iter().map(|(_, p)| p).sum();
                assert!((total - 1.0).abs() < 1e-3, "{ask} {mode}: sums to {total}");
            }
        }
    }
}

/// The exact distribution of a wide number (walked prefix by prefix, `number_distribution`)
/// and draws of the constrained decoder (token by token, `decode_constrained`) are two separate
/// computations of the same distribution.
#[test]
fn sampled_wide_numbers_follow_their_exact_distribution() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let one = r#"
[[questions]]
id = "guess"
type = "number"
min = 0
max = 120
text = "How old do you think your oldest neighbour is?"
"#;
    follows_the_exact_distribution(&model, dir.path(), one, 4000, &["guess"]);
}
