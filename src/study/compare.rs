//! Real respondents to compare a run with (`[compare]`): their answers to some of the study's
//! questions, as option codes, read and checked with the study.

use std::path::PathBuf;

use super::population::Attributes;

#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    /// The CSV they come from.
    pub path: PathBuf,
    /// Row i is the person respondent i + 1 simulates (person-level agreement is measured).
    pub twins: bool,
    /// Ask the model the share of people giving each option, without personas, as a
    /// baseline (`baseline = "share"`).
    pub share_baseline: bool,
    /// Each real respondent's columns.
    pub rows: Vec<Attributes>,
    /// Per compared question, in the study's question order: its id and each row's answer as
    /// one of its option codes (`None` where the cell is empty).
    pub answers: Vec<(String, Vec<Option<String>>)>,
}

impl Compare {
    /// The real answers to question `id`, if it is compared.
    pub fn answers_to(&self, id: &str) -> Option<&[Option<String>]> {
        self.answers
            .iter()
            .find(|(q, _)| q == id)
            .map(|(_, a)| a.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::study::load;

    #[test]
    fn the_anes_example_pairs_each_respondent_with_a_real_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/anes1996.toml");
        let study = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let compare = study.compare.as_ref().unwrap();
        // The population is read from the same CSV: twins by default.
        assert!(compare.twins);
        assert_eq!(study.population().unwrap().len(), 944);
        let votes = compare.answers_to("expected_vote").unwrap();
        let dole = votes
            .iter()
            .filter(|v| v.as_deref() == Some("Dole"))
            .count();
        let clinton = votes
            .iter()
            .filter(|v| v.as_deref() == Some("Clinton"))
            .count();
        assert_eq!((clinton, dole), (551, 393));
    }

    const STUDY: &str = r#"[persona]
template = "You are {{ name }}."
[population]
csv = "people.csv"
[[questions]]
id = "q"
type = "yes_no"
text = "Do you?"
[compare]
csv = "people.csv"
[compare.questions.q]
column = "said"
codes = { "1" = "Yes", "0" = "No" }
"#;

    /// The error for STUDY with `from` replaced by `to`, next to `csv` as people.csv.
    fn error(csv: &str, from: &str, to: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("people.csv"), csv).unwrap();
        std::fs::write(dir.path().join("study.toml"), STUDY.replacen(from, to, 1)).unwrap();
        let message = crate::error::render(&load(&dir.path().join("study.toml")).unwrap_err());
        message.replace(&dir.path().display().to_string(), "[dir]")
    }

    #[test]
    fn bad_compare_tables_are_one_line_errors_naming_the_place() {
        let csv = "name,said\nAnn,1\nBob,2\n";
        assert_eq!(
            error(csv, "", ""),
            "error: [dir]/people.csv:3: said: `2` is not an option of question `q`\nhint: map it in [compare.questions.q] codes = { \"2\" = \"...\" }, or leave the cell empty for a missing answer; options: No, Yes\n"
        );
        let csv = "name,said\nAnn,1\nBob,\n";
        let e = error(csv, "column = \"said\"", "column = \"told\"");
        assert!(e.starts_with("error: [dir]/study.toml:12:10: compare.questions.q.column: `[dir]/people.csv` has no column `told`\nhint: its columns are name, said"), "{e}");
        let e = error(csv, "\"0\" = \"No\"", "\"0\" = \"Nope\"");
        assert!(
            e.contains("compare.questions.q.codes.0: `Nope` is not an option of question `q`"),
            "{e}"
        );
        let e = error(csv, "[compare.questions.q]", "[compare.questions.r]");
        assert!(
            e.contains("the study has no question `r`\nhint: its questions are q"),
            "{e}"
        );
        let e = error(
            csv,
            "csv = \"people.csv\"\n[compare",
            "csv = \"people.csv\"\n[population.cross]\nx = [1, 2]\n[compare",
        );
        assert!(
            e.contains("twins: `[dir]/people.csv` has 2 rows but the population has 4 people"),
            "{e}"
        );
    }
}
