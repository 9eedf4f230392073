//! Questions: what the persona is asked, which answers it may give, and how an answer
//! becomes a number for the statistics.
//!
//! The engine needs the exact answer strings of closed questions ([`Question::options`])
//! to constrain decoding or to score each option; the report needs numbers
//! ([`Question::numeric_value`]). Both follow from the question's kind, so they live here
//! next to the prompt text and never drift apart.

use serde_json::{json, Value};

use super::kind::QuestionKind;
use super::order::Order;
use super::spec::JsonKeys;

pub use super::order::default_instruction;

/// Number questions with at most this many allowed values list them in
/// [`Question::options`]; wider ranges are left to a numeric constraint.
pub const MAX_LISTED_NUMBERS: i64 = 101;

/// Exact mode gives every value of a `number` question its own probability up to this many
/// values; wider ranges name `bins`.
pub const MAX_EXACT_VALUES: i64 = 1001;

/// One checked question.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Column name in the output (`privacy_misuse_concern`).
    pub id: String,
    pub text: String,
    pub kind: QuestionKind,
    /// How to answer, put after the text when questions are asked one by one; empty
    /// for none.
    pub instruction: String,
    /// Text shown before this question when questions are asked together, e.g. to
    /// introduce a second block of items with a different scale.
    pub intro: Option<String>,
    /// The order its options are presented in (`fixed` unless the study says otherwise).
    pub order: Order,
}

impl Question {
    /// The user turn when this question is asked on its own to the respondent whose order
    /// seed is `seed`: the options in the question's [`Order`] (the same for every seed unless
    /// it is `random`).
    pub fn prompt_for(&self, seed: u64) -> String {
        match self.order {
            Order::Fixed => self.prompt(),
            order => self.prompt_shown(&super::order::presented(order, &self.kind, seed)),
        }
    }

    /// The user turn with the options in the order `shown` (indices into [`Self::options`]).
    pub fn prompt_shown(&self, shown: &[usize]) -> String {
        let instruction = super::order::instruction_in(&self.kind, shown);
        format!("{}\n{instruction}", self.text)
    }

    /// The user turn when this question is asked on its own: text, then instruction.
    pub fn prompt(&self) -> String {
        if self.instruction.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n{}", self.text, self.instruction)
        }
    }

    /// Whether the answers come from a fixed set (everything but free text).
    pub fn is_closed(&self) -> bool {
        !matches!(self.kind, QuestionKind::Text { .. })
    }

    /// The exact answer strings the model may produce, in their natural order, or
    /// `None` for free text and for number ranges too wide to list.
    pub fn options(&self) -> Option<Vec<String>> {
        match &self.kind {
            QuestionKind::Scale { min, max, .. } => {
                Some((*min..=*max).map(|i| i.to_string()).collect())
            }
            QuestionKind::Number { min, max, .. }
                if (*max as i128 - *min as i128) < MAX_LISTED_NUMBERS as i128 =>
            {
                Some((*min..=*max).map(|i| i.to_string()).collect())
            }
            QuestionKind::Number { .. } | QuestionKind::Text { .. } => None,
            QuestionKind::Choice { options } => {
                Some(options.iter().map(|o| o.code.clone()).collect())
            }
            QuestionKind::YesNo { yes, no } => Some(vec![no.clone(), yes.clone()]),
        }
    }

    /// The number an answer stands for, for means and correlations.
    pub fn numeric_value(&self, answer: &str) -> Option<f64> {
        match &self.kind {
            QuestionKind::Scale { min, max, .. } | QuestionKind::Number { min, max, .. } => {
                let x: i64 = answer.trim().parse().ok()?;
                (*min..=*max).contains(&x).then_some(x as f64)
            }
            QuestionKind::YesNo { yes, no } => {
                if answer == yes {
                    Some(1.0)
                } else if answer == no {
                    Some(0.0)
                } else {
                    None
                }
            }
            QuestionKind::Choice { options } => {
                let option = options.iter().find(|o| o.code == answer)?;
                option.value.or_else(|| option.code.parse().ok())
            }
            QuestionKind::Text { .. } => None,
        }
    }

    /// Lowest and highest numeric value, used to reverse-code items (`min + max - x`).
    pub fn value_range(&self) -> Option<(f64, f64)> {
        match &self.kind {
            QuestionKind::Scale { min, max, .. } | QuestionKind::Number { min, max, .. } => {
                Some((*min as f64, *max as f64))
            }
            QuestionKind::YesNo { .. } => Some((0.0, 1.0)),
            QuestionKind::Choice { .. } => {
                let values: Option<Vec<f64>> = self
                    .options()?
                    .iter()
                    .map(|code| self.numeric_value(code))
                    .collect();
                let values = values?;
                let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                Some((min, max))
            }
            QuestionKind::Text { .. } => None,
        }
    }

    /// The label of option `code`, for charts and summaries.
    pub fn option_label(&self, code: &str) -> Option<&str> {
        match &self.kind {
            QuestionKind::Choice { options } => {
                options.iter().find(|o| o.code == code)?.label.as_deref()
            }
            QuestionKind::Scale {
                min,
                max,
                min_label,
                max_label,
            } => {
                let x: i64 = code.parse().ok()?;
                if x == *min {
                    min_label.as_deref()
                } else if x == *max {
                    max_label.as_deref()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Maps a model's reply to a canonical answer, or `None` when it is not one.
    ///
    /// Constrained decoding produces canonical answers already; this is for free
    /// generation, where replies look like `5.`, `"A"` or `Democrat`.
    pub fn parse_answer(&self, reply: &str) -> Option<String> {
        let reply = reply
            .trim()
            .trim_matches(|c: char| c == '"' || c == '\'' || c == '*')
            .trim();
        let stripped = reply.trim_end_matches(['.', '!', ',']).trim();
        match &self.kind {
            QuestionKind::Text { .. } => Some(reply.to_string()),
            QuestionKind::Scale { .. } | QuestionKind::Number { .. } => {
                let digits: String = stripped
                    .char_indices()
                    .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
                    .map(|(_, c)| c)
                    .collect();
                let rest = &stripped[digits.len()..];
                if rest.starts_with(|c: char| c.is_alphanumeric()) {
                    return None;
                }
                let x: i64 = digits.parse().ok()?;
                self.numeric_value(&x.to_string()).map(|_| x.to_string())
            }
            QuestionKind::YesNo { yes, no } => {
                let word = leading_word(stripped);
                [(yes, "yes"), (no, "no")]
                    .into_iter()
                    .find_map(|(answer, english)| {
                        let hit = stripped == answer
                            || word.eq_ignore_ascii_case(answer)
                            || word.eq_ignore_ascii_case(english);
                        hit.then(|| answer.clone())
                    })
            }
            QuestionKind::Choice { options } => {
                let word = leading_word(stripped);
                options
                    .iter()
                    .find(|o| o.code == stripped || o.code == word)
                    .or_else(|| {
                        options
                            .iter()
                            .find(|o| o.code.eq_ignore_ascii_case(stripped))
                    })
                    .or_else(|| {
                        options.iter().find(|o| {
                            o.label.as_deref().is_some_and(|l| {
                                l.eq_ignore_ascii_case(stripped) || l.eq_ignore_ascii_case(word)
                            })
                        })
                    })
                    .map(|o| o.code.clone())
            }
        }
    }

    /// JSON schema of this question's answer inside the together-mode answer object.
    pub fn schema(&self) -> Value {
        let as_ints = |codes: &[String]| {
            codes
                .iter()
                .map(|c| c.parse::<i64>().ok())
                .collect::<Option<Vec<_>>>()
        };
        match &self.kind {
            QuestionKind::Scale { min, max, .. } | QuestionKind::Number { min, max, .. } => {
                json!({ "type": "integer", "minimum": min, "maximum": max })
            }
            QuestionKind::Choice { .. } | QuestionKind::YesNo { .. } => {
                let codes = self.options().unwrap_or_default();
                match as_ints(&codes) {
                    Some(ints) => json!({ "type": "integer", "enum": ints }),
                    None => json!({ "type": "string", "enum": codes }),
                }
            }
            QuestionKind::Text { .. } => json!({ "type": "string" }),
        }
    }

    /// The canonical answer for a JSON value from the together-mode answer object.
    /// Lenient on form (`"5"` for `5`, `true` for yes), strict on content.
    fn answer_from_json(&self, value: &Value) -> Result<String, String> {
        let text = match value {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i.to_string(),
                (None, Some(x)) if x.fract() == 0.0 && x.abs() < 1e15 => (x as i64).to_string(),
                _ => n.to_string(),
            },
            Value::String(s) => s.clone(),
            Value::Bool(b) => match &self.kind {
                QuestionKind::YesNo { yes, no } => if *b { yes } else { no }.clone(),
                _ => return Err(format!("`{b}` is not an answer to this question")),
            },
            other => return Err(format!("`{other}` is not an answer")),
        };
        self.parse_answer(&text)
            .ok_or_else(|| match self.options() {
                Some(options) => format!("`{text}` is not one of {}", backticked(&options)),
                None => format!("`{text}` is not a valid answer"),
            })
    }
}

fn leading_word(text: &str) -> &str {
    let end = text
        .find(|c: char| !c.is_alphanumeric())
        .unwrap_or(text.len());
    &text[..end]
}

pub(crate) fn backticked(items: &[String]) -> String {
    if items.len() > 12 {
        return format!("`{}`..`{}`", items[0], items[items.len() - 1]);
    }
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a together-mode reply could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(pub String);

/// How the questions are asked, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum AskMode {
    /// Each question in its own user turn. With `keep_history`, a persona's earlier
    /// questions and answers stay in the conversation; without, every question starts
    /// fresh from the persona.
    Separate { keep_history: bool },
    /// All questions in one user turn, answered as one JSON object (the workshop
    /// notebook's way).
    Together {
        preamble: String,
        closing: String,
        json_keys: JsonKeys,
    },
}

/// The together-mode user turn: preamble, numbered questions (split into blocks by
/// intros), closing, separated by blank lines.
pub fn together_prompt(questions: &[Question], preamble: &str, closing: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    if !preamble.is_empty() {
        blocks.push(preamble.to_string());
    }
    let mut lines: Vec<String> = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        if let Some(intro) = &q.intro {
            if !lines.is_empty() {
                blocks.push(lines.join("\n"));
                lines.clear();
            }
            blocks.push(intro.clone());
        }
        lines.push(format!("{}. {}", i + 1, q.text));
    }
    if !lines.is_empty() {
        blocks.push(lines.join("\n"));
    }
    if !closing.is_empty() {
        blocks.push(closing.to_string());
    }
    blocks.join("\n\n")
}

/// Keys of the answer object, in question order.
pub fn answer_keys(questions: &[Question], keys: JsonKeys) -> Vec<String> {
    questions
        .iter()
        .enumerate()
        .map(|(i, q)| match keys {
            JsonKeys::Id => q.id.clone(),
            JsonKeys::Number => (i + 1).to_string(),
        })
        .collect()
}

/// JSON schema of the together-mode answer object. `required` lists the keys in
/// question order; read the order from there, since a JSON map may sort its keys.
pub fn answer_schema(questions: &[Question], keys: JsonKeys) -> Value {
    let names = answer_keys(questions, keys);
    let properties: serde_json::Map<String, Value> = names
        .iter()
        .zip(questions)
        .map(|(k, q)| (k.clone(), q.schema()))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": names,
        "additionalProperties": false,
    })
}

/// Reads a together-mode reply into one canonical answer per question, in order.
pub fn parse_together(
    questions: &[Question],
    keys: JsonKeys,
    reply: &str,
) -> Result<Vec<String>, AnswerError> {
    let value: Value = serde_json::from_str(reply.trim())
        .map_err(|e| AnswerError(format!("the reply is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(AnswerError("the reply is not a JSON object".into()));
    };
    answer_keys(questions, keys)
        .iter()
        .zip(questions)
        .map(|(key, q)| {
            let value = map
                .get(key)
                .ok_or_else(|| AnswerError(format!("the reply lacks `{key}`")))?;
            q.answer_from_json(value)
                .map_err(|e| AnswerError(format!("`{key}`: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::ChoiceOption;

    fn question(id: &str, kind: QuestionKind) -> Question {
        let instruction = default_instruction(&kind);
        Question {
            id: id.into(),
            text: format!("{id}?"),
            kind,
            instruction,
            intro: None,
            order: Order::Fixed,
        }
    }

    fn scale() -> Question {
        question(
            "q",
            QuestionKind::Scale {
                min: 1,
                max: 7,
                min_label: Some("Strongly Disagree".into()),
                max_label: None,
            },
        )
    }

    fn stance() -> Question {
        let option = |code: &str, label: &str| ChoiceOption {
            code: code.into(),
            label: Some(label.into()),
            value: None,
        };
        question(
            "stance",
            QuestionKind::Choice {
                options: vec![option("A", "Democrat"), option("B", "Republican")],
            },
        )
    }

    fn fossil() -> Question {
        question(
            "fossil",
            QuestionKind::YesNo {
                yes: "1".into(),
                no: "0".into(),
            },
        )
    }

    #[test]
    fn options_per_kind() {
        assert_eq!(
            scale().options().unwrap(),
            ["1", "2", "3", "4", "5", "6", "7"]
        );
        assert_eq!(stance().options().unwrap(), ["A", "B"]);
        assert_eq!(fossil().options().unwrap(), ["0", "1"]);
        assert_eq!(
            question(
                "n",
                QuestionKind::Number {
                    min: 0,
                    max: 100,
                    bins: vec![]
                }
            )
            .options()
            .unwrap()
            .len(),
            101
        );
        assert_eq!(
            question(
                "n",
                QuestionKind::Number {
                    min: 0,
                    max: 1000,
                    bins: vec![]
                }
            )
            .options(),
            None
        );
        assert_eq!(
            question("t", QuestionKind::Text { max_tokens: 50 }).options(),
            None
        );
    }

    #[test]
    fn instructions_per_kind() {
        assert_eq!(
            scale().instruction,
            "Answer with a single number from 1 (Strongly Disagree) to 7."
        );
        assert_eq!(fossil().prompt(), "fossil?\nAnswer 0 for No or 1 for Yes.");
        let yes_no = question(
            "y",
            QuestionKind::YesNo {
                yes: "Yes".into(),
                no: "No".into(),
            },
        );
        assert_eq!(yes_no.instruction, "Answer Yes or No.");
        assert_eq!(
            question("t", QuestionKind::Text { max_tokens: 9 }).prompt(),
            "t?"
        );
    }

    #[test]
    fn numeric_values() {
        assert_eq!(scale().numeric_value("7"), Some(7.0));
        assert_eq!(scale().numeric_value("8"), None);
        assert_eq!(fossil().numeric_value("1"), Some(1.0));
        assert_eq!(stance().numeric_value("A"), None);
        assert_eq!(scale().value_range(), Some((1.0, 7.0)));
        assert_eq!(stance().value_range(), None);
    }

    #[test]
    fn replies_become_canonical_answers() {
        assert_eq!(scale().parse_answer(" 5.").as_deref(), Some("5"));
        assert_eq!(scale().parse_answer("5 (Agree)").as_deref(), Some("5"));
        assert_eq!(scale().parse_answer("57").as_deref(), None);
        assert_eq!(scale().parse_answer("5th").as_deref(), None);
        assert_eq!(stance().parse_answer("\"A\"").as_deref(), Some("A"));
        assert_eq!(
            stance().parse_answer("B (Republican)").as_deref(),
            Some("B")
        );
        assert_eq!(stance().parse_answer("democrat").as_deref(), Some("A"));
        assert_eq!(fossil().parse_answer("No, never").as_deref(), Some("0"));
        assert_eq!(fossil().parse_answer("maybe"), None);
    }

    #[test]
    fn together_mode_prompt_schema_and_parsing() {
        let mut second = stance();
        second.intro = Some("Now about politics.".into());
        let questions = vec![scale(), fossil(), second];
        assert_eq!(
            together_prompt(&questions, "Rate these.", "Answer as JSON."),
            "Rate these.\n\n1. q?\n2. fossil?\n\nNow about politics.\n\n3. stance?\n\nAnswer as JSON."
        );
        let schema = answer_schema(&questions, JsonKeys::Number);
        assert_eq!(schema["required"], json!(["1", "2", "3"]));
        assert_eq!(
            schema["properties"]["2"],
            json!({ "type": "integer", "enum": [0, 1] })
        );
        assert_eq!(
            schema["properties"]["3"],
            json!({ "type": "string", "enum": ["A", "B"] })
        );
        // Strings for numbers were one of the notebook's failures; they are read anyway.
        let answers = parse_together(
            &questions,
            JsonKeys::Id,
            r#"{"q": "6", "fossil": 1, "stance": "B"}"#,
        );
        assert_eq!(answers.unwrap(), ["6", "1", "B"]);
        let missing =
            parse_together(&questions, JsonKeys::Id, r#"{"q": 6, "stance": "B"}"#).unwrap_err();
        assert_eq!(missing.to_string(), "the reply lacks `fossil`");
        let bad = parse_together(
            &questions,
            JsonKeys::Id,
            r#"{"q": 9, "fossil": 1, "stance": "B"}"#,
        )
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "`q`: `9` is not one of `1`, `2`, `3`, `4`, `5`, `6`, `7`"
        );
        assert!(parse_together(&questions, JsonKeys::Id, "{}").is_err());
    }
}
