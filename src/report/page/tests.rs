//! The page's numbers against hand-computed values on tiny runs, and its HTML: escaped,
//! self-contained, every section present.

use std::path::Path;

use super::analysis::{self, Cell};
use super::*;
use crate::report::stats::{mean_interval, wilson_interval};
use crate::report::{Distribution, Record};
use crate::study::{parse, Person, Study};

const STUDY: &str = r#"seed = 5
[persona]
template = "You are {{ name }}, {{ age }}."
[population]
people = [
  { name = "Ann", age = 20, gender = "f" }, { name = "Bob", age = 30, gender = "m" },
  { name = "Cy", age = 40, gender = "m" }, { name = "Dee", age = 50, gender = "f" },
  { name = "Eve", age = 60, gender = "f" }, { name = "Fay", age = 70, gender = "f" },
  { name = "Gus", age = 80, gender = "m" }, { name = "Hal", age = 90, gender = "m" },
]
[[questions]]
id = "a"
type = "scale"
min = 1
max = 3
text = "I worry <a lot> & \"often\"."
[[questions]]
id = "b"
type = "scale"
min = 1
max = 3
text = "I share."
[[questions]]
id = "why"
type = "text"
text = "Why?"
[[constructs]]
id = "AB"
items = ["a", "b"]
"#;

fn study(mode: &str) -> Study {
    let text = format!("{STUDY}[sampling]\nmode = \"{mode}\"\n");
    parse(&text, Path::new("study.toml")).unwrap()
}

fn record(id: usize, sample: usize, q: &str, answer: &str) -> Record {
    Record {
        respondent: id,
        sample,
        question_id: q.into(),
        answer: answer.into(),
        probability: None,
    }
}

/// Person i answers a = i % 3 + 1 and b = (i + 1) % 3 + 1 (person 8 says "junk" to a), with a
/// free-text answer holding markup.
fn sampled(people: &[Person]) -> Vec<Vec<Record>> {
    people
        .iter()
        .map(|p| {
            let a = if p.id == 8 {
                "junk".to_string()
            } else {
                (p.id % 3 + 1).to_string()
            };
            vec![
                record(p.id, 1, "a", &a),
                record(p.id, 1, "b", &((p.id + 1) % 3 + 1).to_string()),
                record(p.id, 1, "why", "<b>because</b>"),
            ]
        })
        .collect()
}

fn input<'a>(
    study: &'a Study,
    manifest: &'a Manifest,
    people: &'a [Person],
    records: &'a [Vec<Record>],
    dists: &'a [Vec<Distribution>],
) -> RunInput<'a> {
    RunInput {
        name: "runs/x".into(),
        manifest,
        study,
        respondents: people
            .iter()
            .zip(records)
            .zip(dists)
            .map(|((person, records), distributions)| Respondent {
                person,
                records,
                distributions,
            })
            .collect(),
        failed: vec![(9, "the model <failed>".into())],
        share: &[],
    }
}

#[test]
fn sampled_shares_intervals_bands_and_alpha_by_hand() {
    let study = study("sample");
    let people = study.population().unwrap();
    let manifest = Manifest::new(&study);
    let records = sampled(&people);
    let dists = vec![Vec::new(); people.len()];
    let run = input(&study, &manifest, &people, &records, &dists);
    let rows = analysis::rows(&run);
    assert_eq!(rows.len(), 8);

    // a: ids 1..=7 give 2,3,1,2,3,1,2 and id 8 is unreadable: "1" twice, "2" three times.
    let cells: Vec<Cell> = rows.iter().filter_map(|r| r.cells[0]).collect();
    let labels = analysis::labels(&study.questions[0], &cells).unwrap();
    let s = analysis::shares(&study.questions[0], &labels, &cells);
    assert_eq!((s.n, s.unreadable), (8, 1));
    assert_eq!(s.share, [2.0 / 8.0, 3.0 / 8.0, 2.0 / 8.0]);
    assert_eq!(s.interval[1], wilson_interval(3.0, 8.0));
    assert_eq!(s.mean, Some(2.0));
    assert_eq!(s.outside, None);

    // Ages 20..90 are eight distinct values: four bands of two; gender has two levels.
    let b = analysis::breakdowns(&study.attribute_names(), &rows);
    let age = b.iter().find(|b| b.attribute == "age").unwrap();
    let bands: Vec<&str> = age.groups.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(bands, ["20–30", "40–50", "60–70", "80–90"]);
    let gender = b.iter().find(|b| b.attribute == "gender").unwrap();
    assert_eq!(gender.groups[0], ("f".to_string(), vec![0, 3, 4, 5]));
    assert!(
        b.iter().all(|b| b.attribute != "name"),
        "a group per person is no breakdown"
    );

    // AB over the 7 complete rows: (a, b) = (2,3) (3,1) (1,2) (2,3) (3,1) (1,2) (2,3).
    // Variances: a 4/7, b 6/7 ... computed here the long way.
    let pairs = [
        (2., 3.),
        (3., 1.),
        (1., 2.),
        (2., 3.),
        (3., 1.),
        (1., 2.),
        (2., 3.),
    ];
    let var = |xs: &[f64]| {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
    };
    let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let bb: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let sums: Vec<f64> = pairs.iter().map(|p| p.0 + p.1).collect();
    let alpha = 2.0 * (1.0 - (var(&a) + var(&bb)) / var(&sums));
    let c = analysis::construct_stats(&study.constructs[0], &study.questions, &rows);
    assert_eq!(c.n, 7);
    assert!(
        (c.alpha.unwrap() - alpha).abs() < 1e-12,
        "{:?} {alpha}",
        c.alpha
    );
}

#[test]
fn exact_shares_are_mean_probabilities_with_their_interval() {
    let study = study("exact");
    let people = study.population().unwrap();
    let manifest = Manifest::new(&study);
    let dists: Vec<Vec<Distribution>> = people
        .iter()
        .map(|p| {
            let x = p.id as f64 / 10.0;
            vec![Distribution {
                respondent: p.id,
                question_id: "a".into(),
                options: vec![("1".into(), x), ("2".into(), 1.0 - x), ("3".into(), 0.0)],
                outside: Some(x / 2.0),
            }]
        })
        .collect();
    let records = vec![Vec::new(); people.len()];
    let run = input(&study, &manifest, &people, &records, &dists);
    let rows = analysis::rows(&run);
    assert_eq!(rows.len(), 8);
    let cells: Vec<Cell> = rows.iter().filter_map(|r| r.cells[0]).collect();
    let labels = analysis::labels(&study.questions[0], &cells).unwrap();
    let s = analysis::shares(&study.questions[0], &labels, &cells);
    let ones: Vec<f64> = (1..=8).map(|i| i as f64 / 10.0).collect();
    assert!((s.share[0] - 0.45).abs() < 1e-12);
    assert_eq!(s.interval[0], mean_interval(&ones));
    assert!((s.outside.unwrap() - 0.225).abs() < 1e-12);
    // Expected values 2 - x: mean 2 - 0.45.
    assert!((s.mean.unwrap() - 1.55).abs() < 1e-12);
}

#[test]
fn the_page_is_escaped_self_contained_and_complete() {
    let study = study("sample");
    let people = study.population().unwrap();
    let manifest = Manifest::new(&study);
    let records = sampled(&people);
    let dists = vec![Vec::new(); people.len()];
    let html = render(&[input(&study, &manifest, &people, &records, &dists)]).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    // Text from the study and the answers is escaped, never markup.
    assert!(html.contains("I worry &lt;a lot&gt; &amp; &quot;often&quot;."));
    assert!(html.contains("&lt;b&gt;because&lt;/b&gt;"));
    assert!(html.contains("the model &lt;failed&gt;"));
    assert!(!html.contains("<b>because"));
    // Nothing is fetched: no src attributes, links only within the page; the only URL is
    // the SVG namespace.
    assert!(!html.contains(" src="));
    assert!(html.matches("href=\"").count() == html.matches("href=\"#").count());
    let urls = html.matches("http").count();
    assert_eq!(
        urls,
        html.matches("http://www.w3.org/2000/svg").count() + 1,
        "CSP meta's http-equiv"
    );
    // Charts: a and b, each by age and by gender, one scatter needs two constructs (none).
    assert_eq!(html.matches("<svg").count(), 2 + 2 * 2);
    for section in [
        "Questions",
        "By attribute",
        "Constructs",
        "Correlations",
        "Free-text answers",
        "Failed respondents",
    ] {
        assert!(
            html.contains(&format!(">{section}</h3>")),
            "{section} missing"
        );
    }
}

#[test]
fn compared_with_real_twins_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("people.csv"),
        "name,said\nAnn,1\nBob,0\nCy,0\nDee,0\n",
    )
    .unwrap();
    let toml = "[persona]\ntemplate = \"You are {{ name }}.\"\n[population]\ncsv = \"people.csv\"\n\
        [sampling]\nmode = \"exact\"\n[[questions]]\nid = \"q\"\ntype = \"yes_no\"\ntext = \"Do you?\"\n\
        [compare]\ncsv = \"people.csv\"\n[compare.questions.q]\ncolumn = \"said\"\ncodes = { \"1\" = \"Yes\", \"0\" = \"No\" }\n";
    std::fs::write(dir.path().join("study.toml"), toml).unwrap();
    let study = crate::study::load(&dir.path().join("study.toml")).unwrap();
    let people = study.population().unwrap();
    let manifest = Manifest::new(&study);
    // P(Yes) 0.9, 0.8, 0.3, 0.2; the real answers are Yes, No, No, No.
    let dists: Vec<Vec<Distribution>> = people
        .iter()
        .zip([0.9, 0.8, 0.3, 0.2])
        .map(|(p, yes)| {
            vec![Distribution {
                respondent: p.id,
                question_id: "q".into(),
                options: vec![("No".into(), 1.0 - yes), ("Yes".into(), yes)],
                outside: None,
            }]
        })
        .collect();
    let records = vec![Vec::new(); people.len()];
    let share = [crate::report::ShareBaseline {
        question_id: "q".into(),
        counts: vec![("No".into(), 30.0), ("Yes".into(), 20.0)],
        shares: vec![("No".into(), 0.6), ("Yes".into(), 0.4)],
    }];
    let mut run = input(&study, &manifest, &people, &records, &dists);
    run.share = &share;
    let rows = analysis::rows(&run);
    let lines = super::compare::lines(&run, &rows, study.compare.as_ref().unwrap());
    // Everyone, then by `said` (names are one per person: no groups).
    let groups: Vec<&str> = lines.iter().map(|l| l.group.as_str()).collect();
    assert_eq!(groups, ["all", "said=0", "said=1"]);
    let all = &lines[0];
    let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
    // Simulated No 0.45 / Yes 0.55 against real 0.75 / 0.25 on values 0 and 1.
    assert!(close(Some(all.model[0]), 0.45) && close(Some(all.human[0]), 0.75));
    assert!(close(all.wasserstein, 0.3) && close(all.ks, 0.3));
    assert!(close(all.uniform_wasserstein, 0.25) && close(all.uniform_ks, 0.25));
    // The share query said 60% No: 0.15 from the real 75%.
    assert!(close(all.share_wasserstein, 0.15) && close(all.share_ks, 0.15));
    assert!(close(all.model_mean, 0.55) && close(all.human_mean, 0.25));
    let (d, lo, hi) = all.difference.unwrap();
    assert!((d - 0.3).abs() < 1e-12 && lo <= d && d <= hi);
    // Twins: most probable Yes, Yes, No, No against Yes, No, No, No.
    let t = all.twins.as_ref().unwrap();
    assert_eq!(t.n, 4);
    assert!((t.accuracy - 0.75).abs() < 1e-12);
    assert!(close(t.kappa, 0.5));
    // Ann alone said yes: 0.9 against 1.
    assert!(close(lines[2].wasserstein, 0.1));
    assert_eq!((lines[2].n_model, lines[2].n_human), (1, 1));

    let mut csv = String::new();
    super::compare::csv("run", &lines, &mut csv);
    assert_eq!(csv.lines().count(), 4);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("run,q,all,4,4,0.55,0.25,0.3,"),
        "{csv}"
    );
    let html = render(&[run]).unwrap();
    assert!(html.contains("Compared with real respondents"));
    assert_eq!(
        html.matches("<svg").count(),
        1 + 1 + 1,
        "shares, by said, simulated vs real"
    );
}

#[test]
fn random_orders_are_tallied_by_the_position_shown() {
    let text = STUDY.replace(
        "[[questions]]\nid = \"a\"",
        "[[questions]]\nid = \"c\"\ntype = \"choice\"\noptions = [\"A\", \"B\", \"C\"]\norder = \"random\"\ntext = \"Pick.\"\n[[questions]]\nid = \"a\"",
    );
    let study = parse(
        &format!("{text}[sampling]\nmode = \"sample\"\n"),
        Path::new("study.toml"),
    )
    .unwrap();
    let people = study.population().unwrap();
    let manifest = Manifest::new(&study);
    // Everyone answers A, wherever it was shown.
    let records: Vec<Vec<Record>> = people
        .iter()
        .map(|p| vec![record(p.id, 1, "c", "A")])
        .collect();
    let dists = vec![Vec::new(); people.len()];
    let run = input(&study, &manifest, &people, &records, &dists);
    let rows = analysis::rows(&run);
    let mut first = 0;
    for p in &people {
        let shown = study.shown_order(p, 0);
        let mut sorted = shown.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
        first += usize::from(shown[0] == 0);
    }
    let mut h = String::new();
    super::order::positions(&mut h, &run, &rows);
    assert!(h.contains("c: answers by the position shown"));
    // The first bar's share is how often A stood first.
    let expected = format!("shown 1: {:.1}%", 100.0 * first as f64 / 8.0);
    assert!(h.contains(&expected), "{expected} not in {h}");
}
