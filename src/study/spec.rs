//! What users write: the study file's tables as serde structs, unchecked.
//!
//! These mirror the TOML one to one and reject unknown fields, so a misspelt key fails
//! at parse time. Fields that later checks must point at are wrapped in
//! `toml::Spanned`, which keeps their byte range for the error message. Rules that
//! involve more than one field live in `validate.rs`, not here.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::value::AttributeValue;

/// The whole study file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Model preset name (from models.toml) or a path to a model file.
    pub model: Option<Spanned<String>>,
    /// Seed for every random draw: population, sampling, chart jitter.
    pub seed: Option<Spanned<u64>>,
    pub persona: Option<Spanned<PersonaSpec>>,
    pub population: Option<Spanned<PopulationSpec>>,
    pub ask: Option<Spanned<AskSpec>>,
    pub sampling: Option<Spanned<SamplingSpec>>,
    #[serde(default)]
    pub scales: BTreeMap<Spanned<String>, Spanned<ScaleSpec>>,
    #[serde(default)]
    pub questions: Vec<Spanned<QuestionSpec>>,
    #[serde(default)]
    pub constructs: Vec<Spanned<ConstructSpec>>,
    pub compare: Option<Spanned<CompareSpec>>,
}

/// `[compare]`: real respondents' answers, to measure how close the run comes to them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// CSV of real respondents, relative to the study file.
    pub csv: Spanned<String>,
    /// Row i of the CSV is the person respondent i simulates (default: when the population is
    /// read from the same CSV).
    pub twins: Option<Spanned<bool>>,
    /// `"share"`: also ask the model, without personas, what share of people gives each
    /// option (the baseline personas have to beat besides a uniform answer).
    pub baseline: Option<Spanned<BaselineSpec>>,
    /// Question id -> where its real answers are.
    #[serde(default)]
    pub questions: BTreeMap<Spanned<String>, Spanned<CompareQuestionSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSpec {
    /// A uniform answer only (always given).
    Uniform,
    /// Uniform, and the model's population-share answer.
    Share,
}

/// `[compare.questions.ID]`: the column holding real answers to question ID, and how its
/// values map to the question's option codes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareQuestionSpec {
    /// Default: the question's id.
    pub column: Option<Spanned<String>>,
    /// CSV value -> option code; values not listed must be option codes themselves.
    #[serde(default)]
    pub codes: BTreeMap<String, Spanned<String>>,
}

/// `[persona]`: how a person's attributes become the text the model sees.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaSpec {
    pub system_prompt: Option<String>,
    /// minijinja template over the population's attributes.
    pub template: Spanned<String>,
    pub placement: Option<Spanned<Placement>>,
    /// Text between the system prompt and the persona when `placement = "system"`.
    pub separator: Option<Spanned<String>>,
    /// Fixed assistant reply to the persona turn when `placement = "user"`.
    pub reply: Option<Spanned<String>>,
}

/// Where the persona text goes in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Appended to the system prompt (the workshop's Demo 3).
    System,
    /// A first user turn, "Please create a synthetic persona …" (Demo 1).
    User,
}

/// `[population]`: who answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationSpec {
    /// Number of generated people, when there is no `people`, `csv` or `cross`.
    pub size: Option<Spanned<u64>>,
    /// Inline people, one table of attributes each.
    pub people: Option<Spanned<Vec<Spanned<AttributeTable>>>>,
    /// CSV file of people, relative to the study file.
    pub csv: Option<Spanned<String>>,
    /// Factors crossed with each other (and with `people`/`csv` rows): every combination.
    pub cross: Option<Spanned<FactorTable>>,
    /// How many copies of the whole panel.
    pub repeat: Option<Spanned<u64>>,
    /// Attributes drawn at random for every person; interpreted in `population.rs`.
    pub draw: Option<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
}

/// Factor name -> levels.
pub type FactorTable = BTreeMap<Spanned<String>, Spanned<Vec<Spanned<AttributeValue>>>>;

/// One inline person: attribute name -> value. Keys keep their spans so the file's
/// order can be restored (toml's map is sorted by key).
pub type AttributeTable = BTreeMap<Spanned<String>, Spanned<AttributeValue>>;

/// `[ask]`: how questions are put to a persona.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskSpec {
    pub mode: Option<Spanned<AskModeSpec>>,
    pub keep_history: Option<Spanned<bool>>,
    pub preamble: Option<Spanned<String>>,
    pub closing: Option<Spanned<String>>,
    pub json_keys: Option<Spanned<JsonKeys>>,
    /// The order of every closed question's options, unless the question says otherwise.
    pub order: Option<Spanned<super::order::Order>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskModeSpec {
    Separate,
    Together,
}

/// Keys of the JSON answer object in `together` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonKeys {
    /// The question ids (`privacy_misuse_concern`).
    Id,
    /// The numbers the questions have in the prompt (`"1"`, `"2"`, …).
    Number,
}

/// `[sampling]`: how answers are drawn.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingSpec {
    pub mode: Option<Spanned<Mode>>,
    pub samples: Option<Spanned<u64>>,
    pub temperature: Option<Spanned<f64>>,
    pub top_p: Option<Spanned<f64>>,
}

/// Whether answers are sampled or every option's probability is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Draw `samples` answers per respondent (silicon sampling).
    Sample,
    /// Score every option of every closed question once: no sampling noise.
    Exact,
}

/// `[scales.NAME]`: a rating scale shared by several questions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    pub min: Spanned<i64>,
    pub max: Spanned<i64>,
    pub min_label: Option<String>,
    pub max_label: Option<String>,
}

/// `[[questions]]`: one question. Which fields apply depends on `type`; the checks
/// in `validate.rs` reject the ones that do not, with a message naming the type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionSpec {
    pub id: Spanned<String>,
    pub text: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<QuestionType>,
    pub scale: Option<Spanned<String>>,
    pub min: Option<Spanned<i64>>,
    pub max: Option<Spanned<i64>>,
    pub min_label: Option<Spanned<String>>,
    pub max_label: Option<Spanned<String>>,
    pub options: Option<Spanned<Vec<Spanned<OptionSpec>>>>,
    pub yes: Option<Spanned<AttributeValue>>,
    pub no: Option<Spanned<AttributeValue>>,
    pub max_tokens: Option<Spanned<u64>>,
    pub bins: Option<Spanned<Vec<Spanned<Vec<i64>>>>>,
    pub instruction: Option<Spanned<String>>,
    pub intro: Option<Spanned<String>>,
    /// The order its options are presented in.
    pub order: Option<Spanned<super::order::Order>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionType {
    Scale,
    Choice,
    YesNo,
    Number,
    Text,
}

impl QuestionType {
    pub fn name(self) -> &'static str {
        match self {
            QuestionType::Scale => "scale",
            QuestionType::Choice => "choice",
            QuestionType::YesNo => "yes_no",
            QuestionType::Number => "number",
            QuestionType::Text => "text",
        }
    }
}

/// One option of a choice question: `"Democrat"` or `{ code = "A", label = "Democrat" }`.
#[derive(Debug)]
pub struct OptionSpec {
    pub code: String,
    pub label: Option<String>,
    pub value: Option<f64>,
}

impl<'de> Deserialize<'de> for OptionSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A bare string is the common case; the table form adds a label and a value.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            code: AttributeValue,
            label: Option<String>,
            value: Option<f64>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OptionSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an option code like \"A\" or a table like { code = \"A\", label = \"Democrat\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OptionSpec, E> {
                Ok(OptionSpec {
                    code: v.to_string(),
                    label: None,
                    value: None,
                })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OptionSpec, E> {
                Ok(OptionSpec {
                    code: v.to_string(),
                    label: None,
                    value: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<OptionSpec, A::Error> {
                let full = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(OptionSpec {
                    code: full.code.to_string(),
                    label: full.label,
                    value: full.value,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[[constructs]]`: a derived score, the mean of some items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstructSpec {
    pub id: Spanned<String>,
    pub label: Option<String>,
    pub items: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub reverse: Vec<Spanned<String>>,
}
