//! Tests of study files: the error messages users see (pinned with insta snapshots),
//! the shipped examples, and the prompts they produce.

use std::path::{Path, PathBuf};

use super::*;

/// A small valid study; tests break one line of it.
const BASE: &str = r#"seed = 7

[persona]
template = "You are a {{ age }}-year-old {{ gender }} person."

[population]
size = 10

[population.draw]
age = { dist = "uniform_int", min = 18, max = 64 }
gender = ["female", "male"]

[[questions]]
id = "q1"
type = "scale"
min = 1
max = 7
text = "I like surveys."

[[questions]]
id = "q2"
type = "scale"
min = 1
max = 7
text = "I answer surveys honestly."

[[constructs]]
id = "liking"
items = ["q1", "q2"]
"#;

fn parse_base(text: &str) -> Result<Study, StudyError> {
    parse(text, Path::new("study.toml"))
}

/// The error for BASE with `from` replaced by `to`, as printed.
fn error_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    printed(parse_base(&BASE.replacen(from, to, 1)).expect_err("the change should be rejected"))
}

/// `err` as `personas` prints it: one `error:` line, then its hint on a line of its own.
fn printed(err: StudyError) -> String {
    let printed = crate::error::render(&err);
    crate::diagnostics::assert_printed_shape(&printed);
    printed
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn base_study_is_valid() {
    let study = parse_base(BASE).unwrap();
    assert_eq!(study.attribute_names(), ["age", "gender"]);
    assert_eq!(study.questions().len(), 2);
    assert_eq!(study.population().unwrap().len(), 10);
}

/// Every study that once crashed the fuzzer (fuzz/regressions/study) is refused in one line.
#[test]
fn fuzz_regressions_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/study");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let message = printed(
            parse(&text, Path::new("study.toml")).expect_err("a fuzz regression was accepted"),
        );
        let stem = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('-', "_");
        insta::assert_snapshot!(format!("fuzz_{stem}"), message);
        seen += 1;
    }
    assert!(seen >= 1, "no regressions in {}", dir.display());
}

#[test]
fn error_unknown_field() {
    insta::assert_snapshot!(
        "unknown_field",
        error_with("text = \"I like surveys.\"", "txt = \"I like surveys.\"")
    );
}

#[test]
fn error_wrong_type() {
    insta::assert_snapshot!("wrong_type", error_with("seed = 7", "seed = \"7\""));
}

#[test]
fn error_unknown_question_type() {
    insta::assert_snapshot!(
        "unknown_question_type",
        error_with("type = \"scale\"", "type = \"scael\"")
    );
}

#[test]
fn error_bad_template_variable() {
    insta::assert_snapshot!(
        "bad_template_variable",
        error_with("{{ age }}-year-old", "{{ agee }}-year-old")
    );
}

#[test]
fn error_template_syntax() {
    insta::assert_snapshot!(
        "template_syntax",
        error_with("{{ gender }} person", "{{ gender person")
    );
}

#[test]
fn error_unknown_construct_item() {
    insta::assert_snapshot!(
        "unknown_construct_item",
        error_with("items = [\"q1\", \"q2\"]", "items = [\"q1\", \"q3\"]")
    );
}

#[test]
fn error_construct_item_not_numeric() {
    let text = BASE.replacen(
        "type = \"scale\"\nmin = 1\nmax = 7\ntext = \"I answer",
        "type = \"text\"\ntext = \"I answer",
        1,
    );
    insta::assert_snapshot!(
        "construct_item_not_numeric",
        printed(parse_base(&text).unwrap_err())
    );
}

#[test]
fn error_reverse_not_in_items() {
    insta::assert_snapshot!(
        "reverse_not_in_items",
        error_with(
            "items = [\"q1\", \"q2\"]",
            "items = [\"q1\", \"q2\"]\nreverse = [\"q3\"]"
        )
    );
}

#[test]
fn error_duplicate_question_id() {
    insta::assert_snapshot!(
        "duplicate_question_id",
        error_with("id = \"q2\"", "id = \"q1\"")
    );
}

#[test]
fn error_attribute_clashes_with_question() {
    insta::assert_snapshot!("attribute_clash", error_with("id = \"q2\"", "id = \"age\""));
}

#[test]
fn error_field_for_other_type() {
    insta::assert_snapshot!(
        "field_for_other_type",
        error_with(
            "max = 7\ntext = \"I like",
            "max = 7\noptions = [\"A\", \"B\"]\ntext = \"I like"
        )
    );
}

#[test]
fn error_extreme_bounds() {
    // Differences of extreme bounds overflowed i64 (a panic in debug, a wrapped "small" range
    // in release).
    insta::assert_snapshot!(
        "scale_extreme_bounds",
        error_with(
            "min = 1\nmax = 7\ntext = \"I like",
            "min = -9223372036854775808\nmax = 9223372036854775807\ntext = \"I like"
        )
    );
    insta::assert_snapshot!(
        "number_extreme_bounds",
        error_with(
            "type = \"scale\"\nmin = 1\nmax = 7\ntext = \"I like",
            "type = \"number\"\nmin = -9223372036854775808\nmax = 9223372036854775807\ntext = \"I like"
        )
    );
    // The widest accepted range is not listed as options (and does not overflow doing so).
    let wide = BASE.replacen(
        "type = \"scale\"\nmin = 1\nmax = 7\ntext = \"I like",
        "type = \"number\"\nmin = -9007199254740991\nmax = 9007199254740991\ntext = \"I like",
        1,
    );
    let study = parse_base(&wide).unwrap();
    assert_eq!(study.questions()[0].options(), None);
}

#[test]
fn error_scale_without_range() {
    insta::assert_snapshot!(
        "scale_without_range",
        error_with("min = 1\nmax = 7\ntext = \"I like", "text = \"I like")
    );
}

#[test]
fn error_bad_distribution() {
    insta::assert_snapshot!(
        "bad_distribution",
        error_with("min = 18, max = 64", "min = 64, max = 18")
    );
}

#[test]
fn error_unknown_dist() {
    insta::assert_snapshot!(
        "unknown_dist",
        error_with("dist = \"uniform_int\"", "dist = \"poisson\"")
    );
}

#[test]
fn error_size_with_people() {
    insta::assert_snapshot!(
        "size_with_people",
        error_with("size = 10", "size = 10\npeople = [{ name = \"Jim\" }]")
    );
}

#[test]
fn error_missing_persona() {
    let text = BASE.replacen(
        "[persona]\ntemplate = \"You are a {{ age }}-year-old {{ gender }} person.\"\n",
        "",
        1,
    );
    insta::assert_snapshot!("missing_persona", printed(parse_base(&text).unwrap_err()));
}

/// The printed error for a study reading `people.csv` (holding `csv`) from a temporary
/// directory, the directory shown as `[dir]`.
fn csv_error(csv: &[u8], study: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("people.csv"), csv).unwrap();
    std::fs::write(dir.path().join("study.toml"), study).unwrap();
    let message = printed(load(&dir.path().join("study.toml")).unwrap_err());
    message.replace(&dir.path().display().to_string(), "[dir]")
}

/// A study with a CSV population and one free-text question.
const CSV_STUDY: &str = "[persona]\ntemplate = \"x\"\n[population]\ncsv = \"people.csv\"\n[[questions]]\nid = \"q\"\ntype = \"text\"\ntext = \"Hi?\"\n";

#[test]
fn error_csv_line() {
    let study = BASE
        .replacen("size = 10", "csv = \"people.csv\"", 1)
        .replacen(
        "age = { dist = \"uniform_int\", min = 18, max = 64 }\ngender = [\"female\", \"male\"]\n",
        "",
        1,
    );
    let message = csv_error(b"age,gender\n35,female\n62,female,extra\n", &study);
    insta::assert_snapshot!("csv_line", message);
}

#[test]
fn error_csv_bad_column_name() {
    insta::assert_snapshot!(
        "csv_bad_column_name",
        csv_error(b"Job Title\nPilot\n", CSV_STUDY)
    );
}

#[test]
fn error_csv_not_utf8() {
    // Latin-1 "Zoë", as a spreadsheet exports it.
    insta::assert_snapshot!("csv_not_utf8", csv_error(b"name\nZo\xeb\n", CSV_STUDY));
}

#[test]
fn error_csv_duplicate_column() {
    insta::assert_snapshot!(
        "csv_duplicate_column",
        csv_error(b"name,age,name\nAnn,3,Bo\n", CSV_STUDY)
    );
}

#[test]
fn error_malformed_toml() {
    insta::assert_snapshot!("malformed_toml", error_with("size = 10", "size = [10"));
    insta::assert_snapshot!(
        "unquoted_text",
        error_with("text = \"I like surveys.\"", "text = I like surveys.")
    );
}

#[test]
fn error_empty_population() {
    insta::assert_snapshot!("zero_size", error_with("size = 10", "size = 0"));
    let people = BASE
        .replacen("size = 10", "people = []", 1)
        .replacen(
            "age = { dist = \"uniform_int\", min = 18, max = 64 }\ngender = [\"female\", \"male\"]\n",
            "",
            1,
        )
        .replacen("[population.draw]\n", "", 1);
    let message = printed(parse_base(&people).unwrap_err());
    insta::assert_snapshot!("empty_people", message);
}

#[test]
fn missing_file_names_the_path() {
    let message = load(Path::new("no/such/study.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("cannot read `no/such/study.toml`"),
        "{message}"
    );
}

#[test]
fn csv_population_reads_values_and_skips_generated_columns() {
    let dir = tempfile::tempdir().unwrap();
    let csv =
        "respondent,age,gender,zip,persona\n1,35,female,007,x\n2,62.5,\"male, mostly\",1000,y\n";
    std::fs::write(dir.path().join("people.csv"), csv).unwrap();
    let study = "[persona]\ntemplate = \"{{ age }} {{ gender }} {{ zip }}\"\n[population]\ncsv = \"people.csv\"\n[[questions]]\nid = \"q\"\ntype = \"text\"\ntext = \"Hi?\"\n";
    std::fs::write(dir.path().join("study.toml"), study).unwrap();
    let people = load(&dir.path().join("study.toml"))
        .unwrap()
        .population()
        .unwrap();
    assert_eq!(people.len(), 2);
    assert_eq!(
        people[0]
            .attributes
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["age", "gender", "zip"]
    );
    assert_eq!(people[0].get("age"), Some(&AttributeValue::Int(35)));
    assert_eq!(
        people[0].get("zip"),
        Some(&AttributeValue::Text("007".into()))
    );
    assert_eq!(people[1].get("age"), Some(&AttributeValue::Float(62.5)));
    assert_eq!(people[1].persona, "62.5 male, mostly 1000");
}

#[test]
fn attributes_keep_file_order() {
    // toml sorts table keys; the study must still list attributes as written.
    let text = BASE.replacen(
        "size = 10",
        "people = [{ zeta = 1, alpha = \"x\" }, { alpha = \"y\", zeta = 2 }]\ncross = { mid = [\"a\", \"b\"], beta = [1, 2, 3] }",
        1,
    );
    let study = parse_base(&text).unwrap();
    assert_eq!(
        study.attribute_names(),
        ["zeta", "alpha", "mid", "beta", "age", "gender"]
    );
    let people = study.population().unwrap();
    assert_eq!(people.len(), 12);
    assert_eq!(
        people[1].get("alpha"),
        Some(&AttributeValue::Text("x".into()))
    );
    assert_eq!(people[1].get("beta"), Some(&AttributeValue::Int(2)));
    assert_eq!(people[11].get("zeta"), Some(&AttributeValue::Int(2)));
}

#[test]
fn examples_validate() {
    for name in ["jim.toml", "job-panel.toml", "privacy-calculus.toml"] {
        let study = load(&examples_dir().join(name)).unwrap_or_else(|e| panic!("{e}"));
        let people = study.population().unwrap();
        assert!(!people.is_empty(), "{name}");
    }
}

#[test]
fn privacy_example_matches_the_notebook() {
    let study = load(&examples_dir().join("privacy-calculus.toml")).unwrap();
    let people = study.population().unwrap();
    assert_eq!(people.len(), 50);
    assert!(people
        .iter()
        .all(|p| matches!(p.get("age"), Some(AttributeValue::Int(18..=64)))));
    // The notebook's system prompt, as the llama.cpp reference script writes it.
    let person = Person {
        id: 1,
        attributes: vec![
            ("age".into(), AttributeValue::Int(35)),
            ("gender".into(), AttributeValue::Text("female".into())),
        ],
        persona: study
            .render_persona(&vec![
                ("age".into(), AttributeValue::Int(35)),
                ("gender".into(), AttributeValue::Text("female".into())),
            ])
            .unwrap(),
    };
    assert_eq!(
        study.system_prompt(&person),
        "You are a virtual person simulator that creates individual synthetic personas, one at a time, that I can specify and then ask them any questions I like. This means that you answer the way the persona would \u{2013} no matter the implications. Be brief. Do not write any additional explanations unless I ask you to.\n\nYou are a 35-year-old female person.\n"
    );
    let notebook_survey = "You will now answer questions about your privacy concerns. Rate your agreement with each statement on a scale from 1 (Strongly Disagree) to 7 (Strongly Agree).

1. I am concerned that the information I submit on the Internet could be misused.
2. I am concerned that a person can find private information about me on the Internet.
3. I am concerned about submitting information on the Internet, because of what others might do with it.
4. I am concerned about submitting information on the Internet, because it could be used in a way I did not foresee.

Now, please answer two additional questions. To what extent are you willing to use the Internet to do the following activities? Rate your willingness with each statement on a scale from 1 (Not at all) to 7 (Very much).

5. Purchase goods (e.g., books or CDs) or services (e.g., airline tickets or hotel reservations) from websites that require me to submit accurate and identifiable information (i.e., credit card information)
6. Retrieve information from websites that require me to submit accurate and identifiable registration information, possibly including credit card information (e.g., using sites that provide personalized stock quotes, insurance rates, or loan rates; or using sexual or gambling websites)
7. Conduct sales transactions at e-commerce sites that require me to provide credit card information (e.g., using sites for purchasing goods or software)
8. Retrieve highly personal and password-protected financial information (e.g., using websites that allow me to access my bank account or my credit card account)

Always make the choice that the person would, never answer with a number lower than 1 or larger than 7.";
    assert_eq!(study.together_prompt().unwrap(), notebook_survey);
    // One item asked on its own, as the llama.cpp reference script asks it.
    assert_eq!(
        study.questions()[0].prompt(),
        "I am concerned that the information I submit on the Internet could be misused.\nAnswer with a single number from 1 (Strongly Disagree) to 7 (Strongly Agree)."
    );
    assert_eq!(
        study
            .constructs
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["PC", "PPIT"]
    );
    let schema = study.answer_schema();
    assert_eq!(schema["required"][7], "personal_intention");
    assert_eq!(
        schema["properties"]["purchase_intention"],
        serde_json::json!({"type": "integer", "minimum": 1, "maximum": 7})
    );
}

#[test]
fn jim_example_matches_the_workshop() {
    let study = load(&examples_dir().join("jim.toml")).unwrap();
    let people = study.population().unwrap();
    let opening = study.opening(&people[0]);
    assert_eq!(opening.len(), 2);
    assert_eq!(
        opening[0],
        crate::chat::Message::system(DEFAULT_SYSTEM_PROMPT)
    );
    assert_eq!(
        opening[1].content,
        "Please create a synthetic persona called \"Jim\" who is a 45-year-old farmer in Iowa with a high school education, a family with 3 children who are in high school, and family revenues between 50 and 80k a year."
    );
    assert_eq!(study.sampling.samples, 200);
    let q = &study.questions()[0];
    assert_eq!(
        q.options(),
        Some(vec!["Democrat".to_string(), "Republican".to_string()])
    );
    assert_eq!(
        q.prompt(),
        "It’s one month before the presidential elections, are you leaning more Democrat or Republican?\nAnswer with Democrat or Republican."
    );
}

#[test]
fn job_panel_example_matches_the_workshop() {
    let study = load(&examples_dir().join("job-panel.toml")).unwrap();
    let people = study.population().unwrap();
    assert_eq!(people.len(), 18);
    assert!(people[1]
        .persona
        .starts_with("Your occupation is oil worker. Day to day"));
    let q3 = study.question("phase_out_fossil_fuels").unwrap();
    assert_eq!(
        q3.prompt(),
        "Do you support phasing out fossil fuels?\nAnswer 0 for No or 1 for Yes."
    );
    assert_eq!(q3.options(), Some(vec!["0".to_string(), "1".to_string()]));
    let stance = study.question("stance").unwrap();
    assert_eq!(
        stance.instruction,
        "Answer with A (Democrat) or B (Republican)."
    );
    assert_eq!(stance.numeric_value("A"), None);
    assert_eq!(
        study
            .question("inflation_concern")
            .unwrap()
            .options()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn docs_smallest_study_is_valid() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/study-format.md"))
            .unwrap();
    let start = docs.find("```toml\n").unwrap() + "```toml\n".len();
    let block = &docs[start..start + docs[start..].find("```").unwrap()];
    let study = parse_base(block).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(study.population().unwrap().len(), 50);
}

#[test]
fn error_number_bins() {
    let number = |bins: &str| {
        error_with(
            "type = \"scale\"\nmin = 1\nmax = 7\ntext = \"I like",
            &format!("type = \"number\"\nmin = 0\nmax = 120\n{bins}text = \"I like"),
        )
    };
    insta::assert_snapshot!(
        "number_bins_overlap",
        number("bins = [[0, 17], [15, 64]]\n")
    );
    insta::assert_snapshot!(
        "number_bin_outside",
        number("bins = [[0, 17], [18, 200]]\n")
    );
    insta::assert_snapshot!("number_bin_reversed", number("bins = [[17, 0]]\n"));
    insta::assert_snapshot!("number_bin_not_a_pair", number("bins = [[0, 17, 64]]\n"));
    insta::assert_snapshot!("number_bins_empty", number("bins = []\n"));
    insta::assert_snapshot!(
        "bins_on_a_scale",
        error_with(
            "max = 7\ntext = \"I like",
            "max = 7\nbins = [[1, 3]]\ntext = \"I like"
        )
    );
    // Exact mode lists each value of at most 1,001; a wider range needs bins.
    let wide = |bins: &str| {
        BASE.replacen(
            "type = \"scale\"\nmin = 1\nmax = 7\ntext = \"I like",
            &format!("type = \"number\"\nmin = 0\nmax = 1000000\n{bins}text = \"I like"),
            1,
        ) + "\n[sampling]\nmode = \"exact\"\n"
    };
    let message = printed(parse_base(&wide("")).unwrap_err());
    insta::assert_snapshot!("number_exact_without_bins", message);
    let study = parse_base(&wide("bins = [[0, 17], [18, 64]]\n")).unwrap();
    assert_eq!(
        study.questions()[0].kind,
        QuestionKind::Number {
            min: 0,
            max: 1_000_000,
            bins: vec![(0, 17), (18, 64)]
        }
    );
}
