//! Studies: who is asked (population and persona), what (questions), how (ask mode and
//! sampling), and what is derived from the answers (constructs).
//!
//! A study is a TOML file (documented in docs/study-format.md). [`load`] reads and checks
//! it completely without touching a model, so a typo fails in milliseconds with one line
//! naming the file, line, column and field. The runner then asks [`Study`] for the
//! people, the prompts and the answer constraints, and feeds the answers to
//! [`crate::report`].

mod compare;
mod construct;
mod draw;
mod error;
mod kind;
mod order;
mod population;
mod question;
mod spec;
mod validate;
mod value;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::chat::Message;

pub use compare::Compare;
pub use construct::{Construct, Item};
pub use draw::Draw;
pub use error::{Diagnostic, StudyError};
pub use kind::{ChoiceOption, QuestionKind};
pub use order::Order;
pub use population::{write_population_csv, Attributes, Person, Population, GENERATED_COLUMNS};
pub use question::{
    answer_keys, answer_schema, default_instruction, parse_together, together_prompt, AnswerError,
    AskMode, Question, MAX_LISTED_NUMBERS,
};
pub use spec::{JsonKeys, Mode, Placement, StudySpec};
pub use value::AttributeValue;

/// The workshop's system prompt (Demo 1), used when a study sets none.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a virtual person simulator that creates individual synthetic personas, one at a time, that I can specify and then ask them any questions I like. Don’t change out of your role unless I ask you to. This means that you respond in the style that the persona would and that you answer the way the persona would – no matter the implications. Be brief. Do not write any additional explanations unless I ask you to.";

/// Column names the outputs use for themselves; attributes, questions and constructs
/// may not take them.
pub const RESERVED_NAMES: [&str; 3] = ["respondent", "sample", "persona"];

/// Reads and checks a study file. Relative paths inside it (a population CSV) are
/// resolved against the file's directory. No model is loaded.
pub fn load(path: &Path) -> Result<Study, StudyError> {
    let bytes = std::fs::read(path).map_err(|source| StudyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        error::invalid(
            path,
            None,
            None,
            format!("the file is not valid UTF-8 ({e})"),
            Some("save it as UTF-8".into()),
        )
    })?;
    parse(&text, path)
}

/// Checks study text as if it were read from `path` (used in messages and to resolve
/// relative paths); [`load`] without the file read.
pub fn parse(text: &str, path: &Path) -> Result<Study, StudyError> {
    validate::study(text, path)
}

/// How answers are drawn, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub mode: Mode,
    /// Answers per respondent (1 in exact mode).
    pub samples: usize,
    pub temperature: f64,
    pub top_p: f64,
}

/// How persona text reaches the model, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaSettings {
    pub system_prompt: String,
    /// The minijinja source of the persona template.
    pub template: String,
    pub placement: Placement,
    /// Between system prompt and persona, for `Placement::System`.
    pub separator: String,
    /// Fixed assistant reply to the persona turn, for `Placement::User`; `None` means
    /// the model writes the reply itself, as in the workshop's chat.
    pub reply: Option<String>,
}

/// A checked study: everything the runner needs, valid by construction.
#[derive(Debug, Clone)]
pub struct Study {
    /// The study file, as given.
    pub path: PathBuf,
    /// SHA-256 of the study file's bytes, for the manifest.
    pub sha256: String,
    /// Model preset name or path, if the study names one.
    pub model: Option<String>,
    pub seed: u64,
    pub persona: PersonaSettings,
    pub population: Population,
    pub questions: Vec<Question>,
    pub constructs: Vec<Construct>,
    pub ask: AskMode,
    pub sampling: Sampling,
    /// Real respondents to compare the run with (`[compare]`).
    pub compare: Option<Compare>,
    /// Holds the compiled persona template.
    env: minijinja::Environment<'static>,
}

const TEMPLATE_NAME: &str = "persona";

impl Study {
    /// The respondents, numbered from 1, each with their persona text rendered.
    /// Deterministic: the same file and seed give the same people.
    pub fn population(&self) -> Result<Vec<Person>, StudyError> {
        self.population
            .generate(self.seed)
            .into_iter()
            .enumerate()
            .map(|(i, attributes)| {
                let persona = self.render_persona(&attributes).map_err(|e| {
                    error::invalid(
                        &self.path,
                        None,
                        Some("persona.template".into()),
                        format!("cannot render the persona of respondent {}: {e}", i + 1),
                        None,
                    )
                })?;
                Ok(Person {
                    id: i + 1,
                    attributes,
                    persona,
                })
            })
            .collect()
    }

    /// Renders the persona template for one attribute list.
    pub fn render_persona(&self, attributes: &Attributes) -> Result<String, minijinja::Error> {
        let ctx: std::collections::BTreeMap<&str, minijinja::Value> = attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_template_value()))
            .collect();
        self.env.get_template(TEMPLATE_NAME)?.render(ctx)
    }

    /// The person's persona text (rendered by [`Study::population`]).
    pub fn persona_text(&self, person: &Person) -> String {
        person.persona.clone()
    }

    /// The system prompt for one person: with the persona appended when it goes in the
    /// system prompt, else the bare system prompt.
    pub fn system_prompt(&self, person: &Person) -> String {
        let settings = &self.persona;
        match settings.placement {
            Placement::System if settings.system_prompt.is_empty() => person.persona.clone(),
            Placement::System => format!(
                "{}{}{}",
                settings.system_prompt, settings.separator, person.persona
            ),
            Placement::User => settings.system_prompt.clone(),
        }
    }

    /// The conversation before the first question: the system prompt, then for
    /// `placement = "user"` the persona turn and, when fixed, the reply. When the
    /// persona turn ends the list, the runner generates the reply.
    pub fn opening(&self, person: &Person) -> Vec<Message> {
        let mut messages = Vec::new();
        let system = self.system_prompt(person);
        if !system.is_empty() {
            messages.push(Message::system(system));
        }
        if self.persona.placement == Placement::User {
            messages.push(Message::user(person.persona.clone()));
            if let Some(reply) = &self.persona.reply {
                messages.push(Message::assistant(reply.clone()));
            }
        }
        messages
    }

    /// The questions, in file order.
    pub fn questions(&self) -> &[Question] {
        &self.questions
    }

    /// The question with this id.
    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == id)
    }

    /// Attribute names in output order.
    pub fn attribute_names(&self) -> Vec<String> {
        self.population.attribute_names()
    }

    /// The user turn with every question, in together mode.
    pub fn together_prompt(&self) -> Option<String> {
        match &self.ask {
            AskMode::Together {
                preamble, closing, ..
            } => Some(together_prompt(&self.questions, preamble, closing)),
            AskMode::Separate { .. } => None,
        }
    }

    fn json_keys(&self) -> JsonKeys {
        match &self.ask {
            AskMode::Together { json_keys, .. } => *json_keys,
            AskMode::Separate { .. } => JsonKeys::Id,
        }
    }

    /// JSON schema of the together-mode answer object (keys in `required` order).
    pub fn answer_schema(&self) -> serde_json::Value {
        answer_schema(&self.questions, self.json_keys())
    }

    /// Keys of the together-mode answer object, in question order.
    pub fn answer_keys(&self) -> Vec<String> {
        answer_keys(&self.questions, self.json_keys())
    }

    /// Reads a together-mode JSON reply into one answer per question, in order.
    pub fn parse_together(&self, reply: &str) -> Result<Vec<String>, AnswerError> {
        parse_together(&self.questions, self.json_keys(), reply)
    }

    /// Question `qi` as `person` is asked it on its own: its options in the question's order,
    /// which for `random` is drawn per respondent and question from the study seed.
    pub fn question_prompt(&self, person: &Person, qi: usize) -> String {
        self.questions[qi].prompt_for(self.order_seed(person, qi))
    }

    /// The option indices (into [`Question::options`]) in the order `person` is shown
    /// question `qi` by [`Self::question_prompt`].
    pub fn shown_order(&self, person: &Person, qi: usize) -> Vec<usize> {
        let q = &self.questions[qi];
        order::presented(q.order, &q.kind, self.order_seed(person, qi))
    }

    fn order_seed(&self, person: &Person, qi: usize) -> u64 {
        derive_seed(self.seed, "order", ((person.id as u64) << 32) ^ qi as u64)
    }

    /// How each question is put in separate mode: one slot per question, asked as
    /// [`Self::question_prompt`] gives it (`None`), except that a question whose order is `all`
    /// has one slot per order it is asked in (`Some(order)`, see [`order::all_orders`]).
    pub fn question_slots(&self) -> Vec<(usize, Option<Vec<usize>>)> {
        self.questions
            .iter()
            .enumerate()
            .flat_map(|(qi, q)| match q.order {
                Order::All if self.sampling.mode == Mode::Exact => order::all_orders(&q.kind)
                    .into_iter()
                    .map(|o| (qi, Some(o)))
                    .collect(),
                _ => vec![(qi, None)],
            })
            .collect()
    }

    /// The seed for one (respondent, sample) pair. Derived from the study seed alone,
    /// so results do not depend on batch size or on the order answers are computed in.
    pub fn sample_seed(&self, respondent: usize, sample: usize) -> u64 {
        derive_seed(
            self.seed,
            "sample",
            ((respondent as u64) << 32) ^ sample as u64,
        )
    }
}

/// A seed for one purpose (`label`) and index, derived from the study seed with
/// SHA-256 so that streams for different purposes never overlap in practice.
pub fn derive_seed(seed: u64, label: &str, index: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update((label.len() as u64).to_le_bytes());
    hasher.update(label.as_bytes());
    hasher.update(index.to_le_bytes());
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// Hex SHA-256 of some bytes (study files, model files).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Names usable as template variables, CSV columns and chart file names.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
