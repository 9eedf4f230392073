//! The kinds of question (scale, choice, yes/no, number, text) with what each allows: the
//! data that both a [`super::Question`] and the order of its options are made from.

/// What a question allows as an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum QuestionKind {
    /// Rating scale `min..=max`, optionally with labels for both ends.
    Scale {
        min: i64,
        max: i64,
        min_label: Option<String>,
        max_label: Option<String>,
    },
    /// Labelled options, answered with their codes.
    Choice { options: Vec<ChoiceOption> },
    /// Two answers; `no` counts as 0 and `yes` as 1.
    YesNo { yes: String, no: String },
    /// A whole number `min..=max`; `bins` group values in exact mode's distribution
    /// (inclusive, within the range, not overlapping; empty for one probability per value).
    Number {
        min: i64,
        max: i64,
        bins: Vec<(i64, i64)>,
    },
    /// Free text of at most `max_tokens` tokens.
    Text { max_tokens: usize },
}

/// One option of a choice question.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceOption {
    /// What the model answers (`A`).
    pub code: String,
    /// What the option means (`Democrat`), shown next to the code.
    pub label: Option<String>,
    /// Number used in statistics; defaults to the code when it is numeric.
    pub value: Option<f64>,
}
