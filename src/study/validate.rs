//! From what the user wrote ([`StudySpec`]) to what the runner uses ([`Study`]).
//!
//! Every rule that spans fields is checked here, before any model loads: names are
//! unique and usable as CSV columns, the persona template only uses attributes the
//! population has, constructs only use closed questions, options fit their question
//! type, and the sampling mode fits the ask mode. Each failure is one line pointing at
//! the offending value, with a hint when the fix is clear.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior};
use toml::Spanned;

mod compare;
mod population;
mod questions;

use super::error::{Source, StudyError};
use super::order::Order;
use super::question::{backticked, AskMode, Question};
use super::spec::{AskModeSpec, JsonKeys, Mode, Placement, StudySpec};
use super::{
    is_identifier, sha256_hex, Construct, Item, PersonaSettings, Sampling, Study,
    DEFAULT_SYSTEM_PROMPT, RESERVED_NAMES, TEMPLATE_NAME,
};
use crate::diagnostics;

/// Together-mode text before the questions when the study gives none.
pub const DEFAULT_PREAMBLE: &str = "Please answer the following questions.";
/// Together-mode text after the questions when the study gives none.
pub const DEFAULT_CLOSING: &str =
    "Answer every question the way the person would, as a JSON object.";
/// Token budget of a free-text answer when the question gives none.
pub const DEFAULT_MAX_TOKENS: u64 = 200;
/// Most people a study may make; beyond this a typo (`size = 5000000`) is likelier
/// than intent.
pub const MAX_POPULATION: usize = 1_000_000;

type Result<T> = std::result::Result<T, StudyError>;

pub(super) fn study(text: &str, path: &Path) -> Result<Study> {
    let src = Source::new(path, text);
    let spec: StudySpec = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    let ask = spec.ask.as_ref().map(Spanned::get_ref);
    let check = Checker {
        together: ask
            .and_then(|a| a.mode.as_ref())
            .is_some_and(|m| *m.get_ref() == AskModeSpec::Together),
        history: ask
            .and_then(|a| a.keep_history.as_ref())
            .is_some_and(|k| *k.get_ref()),
        default_order: ask
            .and_then(|a| a.order.as_ref())
            .map(|o| (o.span(), *o.get_ref())),
        src: &src,
        base_dir: path.parent().unwrap_or(Path::new("")),
        exact: spec
            .sampling
            .as_ref()
            .and_then(|s| s.get_ref().mode.as_ref())
            .is_some_and(|m| *m.get_ref() == Mode::Exact),
    };

    let model = match spec.model {
        Some(m) if m.get_ref().trim().is_empty() => {
            return Err(src.error(
                m.span(),
                "the model name is empty",
                Some("name a preset from models.toml or a file path".into()),
            ))
        }
        Some(m) => Some(m.into_inner()),
        None => None,
    };
    let seed = spec.seed.map_or(0, Spanned::into_inner);
    let population_csv = spec
        .population
        .as_ref()
        .and_then(|p| p.get_ref().csv.as_ref())
        .map(|c| c.get_ref().clone());
    let population = check.population(spec.population)?;
    let attributes = population.attribute_names();
    let (persona, env) = check.persona(spec.persona, &attributes)?;
    let questions = check.questions(&spec.scales, spec.questions, &attributes)?;
    let constructs = check.constructs(spec.constructs, &questions, &attributes)?;
    let ask = check.ask(spec.ask)?;
    let sampling = check.sampling(spec.sampling)?;
    let compare = check.compare(
        spec.compare,
        &questions,
        &population,
        population_csv.as_deref(),
    )?;

    Ok(Study {
        path: path.to_path_buf(),
        sha256: sha256_hex(text.as_bytes()),
        model,
        seed,
        persona,
        population,
        questions,
        constructs,
        ask,
        sampling,
        compare,
        env,
    })
}

struct Checker<'a> {
    src: &'a Source<'a>,
    base_dir: &'a Path,
    /// The study asks for exact distributions (`[sampling] mode = "exact"`).
    exact: bool,
    /// The study asks all questions in one turn (`[ask] mode = "together"`).
    together: bool,
    /// The study keeps each respondent's earlier questions in the conversation.
    history: bool,
    /// `[ask] order`, where it is given.
    default_order: Option<(Range<usize>, Order)>,
}

impl Checker<'_> {
    fn err(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> StudyError {
        self.src.error(span, message, hint.map(str::to_string))
    }

    /// A name that becomes a CSV column (and for attributes, a template variable).
    fn check_name(
        &self,
        span: Range<usize>,
        name: &str,
        what: &str,
        taken: &[String],
    ) -> Result<()> {
        if !is_identifier(name) {
            return Err(self.err(
                span,
                format!("{what} `{name}` is not a valid name"),
                Some("use letters, digits and `_`, starting with a letter, e.g. `job_title`"),
            ));
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(self.err(
                span,
                format!("{what} `{name}` uses a name the outputs reserve"),
                Some("`respondent`, `sample` and `persona` are reserved; rename it"),
            ));
        }
        if taken.iter().any(|t| t == name) {
            return Err(self.err(
                span,
                format!("{what} `{name}` is already used"),
                Some("attributes, question ids and construct ids share the output columns; each needs its own name"),
            ));
        }
        Ok(())
    }

    fn persona(
        &self,
        spec: Option<Spanned<super::spec::PersonaSpec>>,
        attributes: &[String],
    ) -> Result<(PersonaSettings, Environment<'static>)> {
        let Some(spec) = spec else {
            return Err(self.src.error_with_field(
                0..0,
                Some("persona".into()),
                "the study has no [persona] table",
                Some("add [persona] with template = \"You are a {{ age }}-year-old {{ gender }} person.\"".into()),
            ));
        };
        let spec = spec.into_inner();
        let placement = spec
            .placement
            .as_ref()
            .map_or(Placement::System, |p| *p.get_ref());
        if let (Placement::User, Some(sep)) = (placement, &spec.separator) {
            return Err(self.err(
                sep.span(),
                "`separator` applies only to placement = \"system\"",
                Some("remove it"),
            ));
        }
        if let (Placement::System, Some(reply)) = (placement, &spec.reply) {
            return Err(self.err(
                reply.span(),
                "`reply` applies only to placement = \"user\"",
                Some("remove it"),
            ));
        }

        let template = spec.template;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Keep a trailing newline: the notebook's persona line ends with one, and
        // reproducing its prompts byte for byte matters for comparisons.
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("default delimiters"),
        );
        if let Err(e) = env.add_template_owned(TEMPLATE_NAME, template.get_ref().clone()) {
            let detail = e
                .detail()
                .map_or_else(|| e.kind().to_string(), str::to_string);
            return Err(self.err(
                template.span(),
                format!("template syntax error: {detail}"),
                Some("write `{{ name }}` to insert the attribute `name`"),
            ));
        }
        let globals: HashSet<String> = env.globals().map(|(k, _)| k.to_string()).collect();
        let mut unknown: Vec<String> = env
            .get_template(TEMPLATE_NAME)
            .expect("template was just added")
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !attributes.contains(v) && !globals.contains(v))
            .collect();
        unknown.sort();
        if let Some(var) = unknown.first() {
            let raw = &self.src.text[template.span()];
            let offset = raw.find(var.as_str()).unwrap_or(0);
            let at = template.span().start + offset;
            let hint = match (suggest(var, attributes), attributes.is_empty()) {
                (Some(close), _) => format!("did you mean `{close}`?"),
                (None, true) => {
                    "the population has no attributes; add some under [population]".into()
                }
                (None, false) => {
                    format!("the population's attributes are {}", backticked(attributes))
                }
            };
            return Err(self.err(
                at..at + var.len(),
                format!("unknown variable `{var}` in the template"),
                Some(&hint),
            ));
        }

        let settings = PersonaSettings {
            system_prompt: spec
                .system_prompt
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string()),
            template: template.into_inner(),
            placement,
            separator: spec
                .separator
                .map_or_else(|| "\n\n".to_string(), Spanned::into_inner),
            reply: spec.reply.map(Spanned::into_inner),
        };
        Ok((settings, env))
    }

    fn constructs(
        &self,
        specs: Vec<Spanned<super::spec::ConstructSpec>>,
        questions: &[Question],
        attributes: &[String],
    ) -> Result<Vec<Construct>> {
        let mut taken: Vec<String> = attributes
            .iter()
            .cloned()
            .chain(questions.iter().map(|q| q.id.clone()))
            .collect();
        let closed: Vec<String> = questions
            .iter()
            .filter(|q| q.value_range().is_some())
            .map(|q| q.id.clone())
            .collect();
        let mut constructs = Vec::new();
        for spec in specs {
            let c = spec.into_inner();
            self.check_name(c.id.span(), c.id.get_ref(), "construct id", &taken)?;
            if c.items.get_ref().is_empty() {
                return Err(self.err(
                    c.items.span(),
                    format!("construct `{}` has no items", c.id.get_ref()),
                    None,
                ));
            }
            let mut items: Vec<Item> = Vec::new();
            for item in c.items.get_ref() {
                let name = item.get_ref();
                let Some(question) = questions.iter().find(|q| &q.id == name) else {
                    let listed: Vec<&String> =
                        c.items.get_ref().iter().map(|i| i.get_ref()).collect();
                    let unused: Vec<String> = closed
                        .iter()
                        .filter(|q| !listed.contains(q))
                        .cloned()
                        .collect();
                    let hint = match suggest(name, &unused) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!(
                            "items must be ids of closed questions: {}",
                            backticked(&closed)
                        ),
                    };
                    return Err(self.err(
                        item.span(),
                        format!("unknown question `{name}`"),
                        Some(&hint),
                    ));
                };
                if question.value_range().is_none() {
                    return Err(self.err(
                        item.span(),
                        format!("question `{name}` has no numeric answers to average"),
                        Some("use scale, number or yes_no questions, or give choice options a `value`"),
                    ));
                }
                if items.iter().any(|i| &i.question_id == name) {
                    return Err(self.err(
                        item.span(),
                        format!("item `{name}` appears twice"),
                        None,
                    ));
                }
                items.push(Item {
                    question_id: name.clone(),
                    reverse_sum: None,
                });
            }
            for rev in &c.reverse {
                let Some(item) = items.iter_mut().find(|i| &i.question_id == rev.get_ref()) else {
                    return Err(self.err(
                        rev.span(),
                        format!("`{}` is in `reverse` but not in `items`", rev.get_ref()),
                        Some("list reverse-coded items in `items` too"),
                    ));
                };
                let (min, max) = questions
                    .iter()
                    .find(|q| q.id == item.question_id)
                    .and_then(Question::value_range)
                    .expect("checked above");
                item.reverse_sum = Some(min + max);
            }
            taken.push(c.id.get_ref().clone());
            constructs.push(Construct {
                id: c.id.into_inner(),
                label: c.label,
                items,
            });
        }
        Ok(constructs)
    }

    fn ask(&self, spec: Option<Spanned<super::spec::AskSpec>>) -> Result<AskMode> {
        let Some(spec) = spec.map(Spanned::into_inner) else {
            return Ok(AskMode::Separate {
                keep_history: false,
            });
        };
        match spec
            .mode
            .as_ref()
            .map_or(AskModeSpec::Separate, |m| *m.get_ref())
        {
            AskModeSpec::Separate => {
                let together_only = [
                    ("preamble", spec.preamble.map(|s| s.span())),
                    ("closing", spec.closing.map(|s| s.span())),
                    ("json_keys", spec.json_keys.map(|s| s.span())),
                ];
                if let Some((name, Some(at))) = together_only.into_iter().find(|(_, s)| s.is_some())
                {
                    return Err(self.err(
                        at,
                        format!("`{name}` applies only to mode = \"together\""),
                        Some("remove it, or set mode = \"together\""),
                    ));
                }
                Ok(AskMode::Separate {
                    keep_history: spec.keep_history.is_some_and(|k| *k.get_ref()),
                })
            }
            AskModeSpec::Together => {
                if let Some(k) = spec.keep_history {
                    return Err(self.err(
                        k.span(),
                        "`keep_history` applies only to mode = \"separate\"",
                        Some("together mode asks everything in one turn; remove it"),
                    ));
                }
                Ok(AskMode::Together {
                    preamble: spec
                        .preamble
                        .map_or_else(|| DEFAULT_PREAMBLE.to_string(), Spanned::into_inner),
                    closing: spec
                        .closing
                        .map_or_else(|| DEFAULT_CLOSING.to_string(), Spanned::into_inner),
                    json_keys: spec.json_keys.map_or(JsonKeys::Id, Spanned::into_inner),
                })
            }
        }
    }

    fn sampling(&self, spec: Option<Spanned<super::spec::SamplingSpec>>) -> Result<Sampling> {
        let spec = spec.map(Spanned::into_inner);
        let spec = spec.as_ref();
        let mode = spec.and_then(|s| s.mode.as_ref());
        let samples = spec.and_then(|s| s.samples.as_ref());
        let temperature = spec.and_then(|s| s.temperature.as_ref());
        let top_p = spec.and_then(|s| s.top_p.as_ref());

        if let Some(n) = samples {
            if !(1..=1_000_000).contains(n.get_ref()) {
                return Err(self.err(
                    n.span(),
                    format!("`samples` must be from 1 to 1000000, got `{}`", n.get_ref()),
                    None,
                ));
            }
        }
        if let Some(t) = temperature {
            if !t.get_ref().is_finite() || *t.get_ref() < 0.0 {
                return Err(self.err(
                    t.span(),
                    format!("`temperature` must be 0 or more, got `{}`", t.get_ref()),
                    Some("0 always picks the most likely answer"),
                ));
            }
        }
        if let Some(p) = top_p {
            if !(*p.get_ref() > 0.0 && *p.get_ref() <= 1.0) {
                return Err(self.err(
                    p.span(),
                    format!(
                        "`top_p` must be above 0 and at most 1, got `{}`",
                        p.get_ref()
                    ),
                    None,
                ));
            }
        }
        // Exact mode combines with every ask mode: closed questions are scored, free text is
        // sampled, and `samples` draws from the scored distributions (see runner.rs).
        let mode_value = mode.map_or(Mode::Sample, |m| *m.get_ref());
        Ok(Sampling {
            mode: mode_value,
            samples: samples.map_or(1, |n| *n.get_ref() as usize),
            temperature: temperature.map_or(1.0, |t| *t.get_ref()),
            top_p: top_p.map_or(1.0, |p| *p.get_ref()),
        })
    }
}

/// The candidate closest to `name`, if close enough to be a typo ([`diagnostics::suggest`]).
fn suggest(name: &str, candidates: &[String]) -> Option<String> {
    let closest = diagnostics::suggest(name, candidates.iter().map(String::as_str));
    closest.first().map(|c| c.to_string())
}
