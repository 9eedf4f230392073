//! Checks of `[compare]`: the CSV reads, every compared question is a closed question of the
//! study whose column exists, every value maps to one of its options, and twins line up with
//! the population.

use toml::Spanned;

use super::{Checker, Result};
use crate::study::compare::Compare;
use crate::study::error::invalid;
use crate::study::population::{read_csv, Population};
use crate::study::question::Question;
use crate::study::spec::{BaselineSpec, CompareSpec};

impl Checker<'_> {
    pub(super) fn compare(
        &self,
        spec: Option<Spanned<CompareSpec>>,
        questions: &[Question],
        population: &Population,
        population_csv: Option<&str>,
    ) -> Result<Option<Compare>> {
        let Some(spec) = spec else {
            return Ok(None);
        };
        let span = spec.span();
        let spec = spec.into_inner();
        let path = self.base_dir.join(spec.csv.get_ref());
        let rows = read_csv(&path)?;
        if spec.questions.is_empty() {
            return Err(self.err(
                span,
                "[compare] names no questions",
                Some("add [compare.questions.ID] with the `column` holding real answers to question ID"),
            ));
        }
        let mut answers = Vec::new();
        for q in questions {
            let Some((key, entry)) = spec.questions.iter().find(|(k, _)| k.get_ref() == &q.id)
            else {
                continue;
            };
            if matches!(&q.kind, crate::study::QuestionKind::Number { bins, .. } if !bins.is_empty())
            {
                return Err(self.err(
                    key.span(),
                    format!(
                        "question `{}` is answered in bins, which real answers are not",
                        q.id
                    ),
                    Some("compare the question without `bins`"),
                ));
            }
            let Some(options) = q.options() else {
                return Err(self.err(
                    key.span(),
                    format!("question `{}` has no fixed options to compare", q.id),
                    Some("compare closed questions (scale, choice, yes_no, narrow numbers)"),
                ));
            };
            let entry = entry.get_ref();
            let column = entry.column.as_ref().map_or(q.id.as_str(), |c| c.get_ref());
            let has_column = rows[0].iter().any(|(name, _)| name == column);
            if !has_column {
                let names: Vec<&str> = rows[0].iter().map(|(n, _)| n.as_str()).collect();
                let at = entry.column.as_ref().map_or(key.span(), |c| c.span());
                return Err(self.err(
                    at,
                    format!("`{}` has no column `{column}`", path.display()),
                    Some(&format!("its columns are {}", names.join(", "))),
                ));
            }
            for code in entry.codes.values() {
                if !options.contains(code.get_ref()) {
                    return Err(self.err(
                        code.span(),
                        format!(
                            "`{}` is not an option of question `{}`",
                            code.get_ref(),
                            q.id
                        ),
                        Some(&format!("its options are {}", options.join(", "))),
                    ));
                }
            }
            let mut column_answers = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                let value = row
                    .iter()
                    .find(|(name, _)| name == column)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                if value.is_empty() {
                    column_answers.push(None);
                    continue;
                }
                let code = entry
                    .codes
                    .get(&value)
                    .map_or(value.clone(), |c| c.get_ref().clone());
                if !options.contains(&code) {
                    return Err(invalid(
                        &path,
                        Some(i + 2),
                        Some(column.to_string()),
                        format!("`{value}` is not an option of question `{}`", q.id),
                        Some(format!(
                            "map it in [compare.questions.{}] codes = {{ \"{value}\" = \"...\" }}, or leave the cell empty for a missing answer; options: {}",
                            q.id,
                            options.join(", ")
                        )),
                    ));
                }
                column_answers.push(Some(code));
            }
            answers.push((q.id.clone(), column_answers));
        }
        if let Some((key, _)) = spec
            .questions
            .iter()
            .find(|(k, _)| !questions.iter().any(|q| &q.id == k.get_ref()))
        {
            let ids: Vec<&str> = questions.iter().map(|q| q.id.as_str()).collect();
            return Err(self.err(
                key.span(),
                format!("the study has no question `{}`", key.get_ref()),
                Some(&format!("its questions are {}", ids.join(", "))),
            ));
        }
        let same_csv = population_csv.is_some_and(|p| self.base_dir.join(p) == path);
        let twins = spec.twins.as_ref().map_or(same_csv, |t| *t.get_ref());
        if twins && rows.len() != population.size() {
            let at = spec.twins.as_ref().map_or(spec.csv.span(), |t| t.span());
            return Err(self.err(
                at,
                format!(
                    "twins: `{}` has {} rows but the population has {} people",
                    path.display(),
                    rows.len(),
                    population.size()
                ),
                Some("twins pair row i with respondent i: read the population from the same CSV, or set twins = false"),
            ));
        }
        Ok(Some(Compare {
            path,
            twins,
            share_baseline: spec
                .baseline
                .is_some_and(|b| *b.get_ref() == BaselineSpec::Share),
            rows,
            answers,
        }))
    }
}
