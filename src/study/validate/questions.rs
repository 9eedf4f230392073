//! Checks of `[[questions]]` and `[scales]`: ids, and the fields each question type
//! takes, turned into [`QuestionKind`]s with their default instructions.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::{suggest, Checker, Result, DEFAULT_MAX_TOKENS};
use crate::study::kind::{ChoiceOption, QuestionKind};
use crate::study::order::Order;
use crate::study::question::{backticked, default_instruction, Question, MAX_EXACT_VALUES};
use crate::study::spec::{QuestionSpec, QuestionType, ScaleSpec};
use crate::study::value::AttributeValue;

/// The largest bound a `number` question takes in size: 2^53 - 1, the last integer f64 (in
/// which answers are summarized) holds exactly.
const MAX_NUMBER: u64 = (1 << 53) - 1;

impl Checker<'_> {
    pub(super) fn questions(
        &self,
        scales: &BTreeMap<Spanned<String>, Spanned<ScaleSpec>>,
        specs: Vec<Spanned<QuestionSpec>>,
        attributes: &[String],
    ) -> Result<Vec<Question>> {
        for (name, scale) in scales {
            let s = scale.get_ref();
            self.scale_range(s.min.get_ref(), &s.max, name.get_ref())?;
        }
        if specs.is_empty() {
            return Err(self.src.error_with_field(
                0..0,
                Some("questions".into()),
                "the study has no questions",
                Some("add a [[questions]] table with `id`, `type` and `text`".into()),
            ));
        }
        let mut taken: Vec<String> = attributes.to_vec();
        let mut questions = Vec::new();
        for spec in specs {
            let span = spec.span();
            let q = spec.into_inner();
            self.check_name(q.id.span(), q.id.get_ref(), "question id", &taken)?;
            if q.text.get_ref().trim().is_empty() {
                return Err(self.err(q.text.span(), "the question text is empty", None));
            }
            let kind = self.question_kind(&q, span, scales)?;
            let order = self.order(&q, &kind)?;
            let instruction = q
                .instruction
                .map_or_else(|| default_instruction(&kind), Spanned::into_inner);
            taken.push(q.id.get_ref().clone());
            questions.push(Question {
                id: q.id.into_inner(),
                text: q.text.into_inner(),
                kind,
                instruction,
                intro: q.intro.map(Spanned::into_inner),
                order,
            });
        }
        Ok(questions)
    }

    /// The order a question's options are presented in: its own `order`, else `[ask] order`
    /// for the questions it can apply to, else fixed.
    fn order(&self, q: &QuestionSpec, kind: &QuestionKind) -> Result<Order> {
        let own = q.order.as_ref().map(|o| (o.span(), *o.get_ref()));
        let Some((at, order)) = own.clone().or_else(|| self.default_order.clone()) else {
            return Ok(Order::Fixed);
        };
        if order == Order::Fixed {
            return Ok(order);
        }
        let hint = "set order = \"fixed\" on this question";
        if matches!(
            kind,
            QuestionKind::Number { .. } | QuestionKind::Text { .. }
        ) {
            // The study-wide order passes over questions without options to order.
            return match own {
                Some(_) => Err(self.err(
                    at,
                    format!(
                        "a {} question has no options to order",
                        q.kind.get_ref().name()
                    ),
                    Some("remove `order`"),
                )),
                None => Ok(Order::Fixed),
            };
        }
        if self.together {
            return Err(self.err(
                at,
                "`order` applies to questions asked one by one",
                Some("together mode asks everything in one turn; remove it, or set [ask] mode = \"separate\""),
            ));
        }
        if order == Order::All && !self.exact {
            return Err(self.err(
                at,
                "order = \"all\" averages exact distributions over the orders",
                Some(
                    "set [sampling] mode = \"exact\", or present the options in a \"random\" order",
                ),
            ));
        }
        if order == Order::All && self.history {
            return Err(self.err(
                at,
                "order = \"all\" asks each order on its own, which a conversation with history cannot",
                Some("remove keep_history, or present the options in a \"random\" order"),
            ));
        }
        if let Some(instruction) = &q.instruction {
            return Err(self.err(
                instruction.span(),
                "a question with its own instruction keeps its options' order",
                Some(&format!(
                    "`order` rewrites the default instruction: remove `instruction`, or {hint}"
                )),
            ));
        }
        Ok(order)
    }

    /// A number question's `bins`: pairs of whole numbers `[lo, hi]`, `lo <= hi`, inside the
    /// range, not overlapping.
    fn bins(
        &self,
        spec: Option<&Spanned<Vec<Spanned<Vec<i64>>>>>,
        min: i64,
        max: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let Some(spec) = spec else {
            return Ok(Vec::new());
        };
        if spec.get_ref().is_empty() {
            return Err(self.err(
                spec.span(),
                "`bins` is empty",
                Some("remove it for one probability per value, or name ranges, e.g. bins = [[0, 17], [18, 120]]"),
            ));
        }
        let mut bins: Vec<(i64, i64)> = Vec::new();
        for bin in spec.get_ref() {
            let (lo, hi) = match bin.get_ref().as_slice() {
                [lo, hi] if lo <= hi => (*lo, *hi),
                [lo, hi] => {
                    return Err(self.err(
                        bin.span(),
                        format!("the bin [{lo}, {hi}] is empty: its end is below its start"),
                        Some(&format!("write it as [{hi}, {lo}]")),
                    ))
                }
                _ => {
                    return Err(self.err(
                        bin.span(),
                        "a bin is two whole numbers, its first and last value",
                        Some("e.g. [18, 64]"),
                    ))
                }
            };
            if lo < min || hi > max {
                return Err(self.err(
                    bin.span(),
                    format!("the bin [{lo}, {hi}] reaches outside the range {min} to {max}"),
                    None,
                ));
            }
            if let Some((a, b)) = bins.iter().find(|(a, b)| lo <= *b && *a <= hi) {
                return Err(self.err(
                    bin.span(),
                    format!("the bin [{lo}, {hi}] overlaps the bin [{a}, {b}]"),
                    Some("each value may fall in one bin only"),
                ));
            }
            bins.push((lo, hi));
        }
        Ok(bins)
    }

    fn scale_range(&self, min: &i64, max: &Spanned<i64>, what: &str) -> Result<()> {
        if min >= max.get_ref() {
            return Err(self.err(
                max.span(),
                format!(
                    "`max` ({}) of {what} must be larger than `min` ({min})",
                    max.get_ref()
                ),
                None,
            ));
        }
        // In i128: the difference of two extreme i64 bounds overflows i64.
        let points = *max.get_ref() as i128 - *min as i128 + 1;
        if points > 101 {
            return Err(self.err(
                max.span(),
                format!("{what} has {points} points; a scale may have at most 101"),
                Some("use type = \"number\" for wide ranges"),
            ));
        }
        Ok(())
    }

    fn question_kind(
        &self,
        q: &QuestionSpec,
        span: Range<usize>,
        scales: &BTreeMap<Spanned<String>, Spanned<ScaleSpec>>,
    ) -> Result<QuestionKind> {
        let kind = *q.kind.get_ref();
        let present: [(&str, Option<Range<usize>>); 9] = [
            ("scale", q.scale.as_ref().map(Spanned::span)),
            ("min", q.min.as_ref().map(Spanned::span)),
            ("max", q.max.as_ref().map(Spanned::span)),
            ("min_label", q.min_label.as_ref().map(Spanned::span)),
            ("max_label", q.max_label.as_ref().map(Spanned::span)),
            ("options", q.options.as_ref().map(Spanned::span)),
            ("yes", q.yes.as_ref().map(Spanned::span)),
            ("max_tokens", q.max_tokens.as_ref().map(Spanned::span)),
            ("bins", q.bins.as_ref().map(Spanned::span)),
        ];
        let allowed: &[&str] = match kind {
            QuestionType::Scale => &["scale", "min", "max", "min_label", "max_label"],
            QuestionType::Choice => &["options"],
            QuestionType::YesNo => &["yes"],
            QuestionType::Number => &["min", "max", "bins"],
            QuestionType::Text => &["max_tokens"],
        };
        let stray = present
            .iter()
            .find(|(name, s)| s.is_some() && !allowed.contains(name));
        let stray = stray.map(|(n, s)| (*n, s.clone())).or_else(|| {
            // `no` travels with `yes`; checked on its own to keep the table above short.
            (kind != QuestionType::YesNo)
                .then(|| q.no.as_ref().map(|n| ("no", Some(n.span()))))
                .flatten()
        });
        if let Some((name, Some(at))) = stray {
            return Err(self.err(
                at,
                format!("`{name}` does not apply to a `{}` question", kind.name()),
                Some("remove it, or change `type`"),
            ));
        }
        let id = q.id.get_ref();
        let need = |what: &str, example: &str| {
            self.src.error_with_field(
                span.clone(),
                self.src
                    .field_at(q.id.span().start)
                    .map(|f| f.trim_end_matches(".id").to_string()),
                format!("question `{id}` of type `{}` needs {what}", kind.name()),
                Some(format!("e.g. {example}")),
            )
        };
        Ok(match kind {
            QuestionType::Scale => match (&q.scale, &q.min, &q.max) {
                (Some(name), None, None) => {
                    let Some((_, s)) = scales.iter().find(|(k, _)| k.get_ref() == name.get_ref())
                    else {
                        let names: Vec<String> =
                            scales.keys().map(|k| k.get_ref().clone()).collect();
                        let hint = match suggest(name.get_ref(), &names) {
                            Some(close) => format!("did you mean `{close}`?"),
                            None if names.is_empty() => "define it in a [scales.NAME] table".into(),
                            None => format!("the scales are {}", backticked(&names)),
                        };
                        return Err(self.err(
                            name.span(),
                            format!("unknown scale `{}`", name.get_ref()),
                            Some(&hint),
                        ));
                    };
                    let s = s.get_ref();
                    QuestionKind::Scale {
                        min: *s.min.get_ref(),
                        max: *s.max.get_ref(),
                        min_label: q
                            .min_label
                            .as_ref()
                            .map(|l| l.get_ref().clone())
                            .or_else(|| s.min_label.clone()),
                        max_label: q
                            .max_label
                            .as_ref()
                            .map(|l| l.get_ref().clone())
                            .or_else(|| s.max_label.clone()),
                    }
                }
                (Some(name), _, _) => {
                    return Err(self.err(
                        name.span(),
                        "give either `scale` or `min` and `max`, not both",
                        Some("remove one"),
                    ))
                }
                (None, Some(min), Some(max)) => {
                    self.scale_range(min.get_ref(), max, &format!("question `{id}`"))?;
                    QuestionKind::Scale {
                        min: *min.get_ref(),
                        max: *max.get_ref(),
                        min_label: q.min_label.as_ref().map(|l| l.get_ref().clone()),
                        max_label: q.max_label.as_ref().map(|l| l.get_ref().clone()),
                    }
                }
                _ => {
                    return Err(need(
                        "`min` and `max`, or a `scale`",
                        "min = 1, max = 7, min_label = \"Strongly Disagree\"",
                    ))
                }
            },
            QuestionType::Number => match (&q.min, &q.max) {
                (Some(min), Some(max))
                    if [min, max]
                        .iter()
                        .any(|b| b.get_ref().unsigned_abs() > MAX_NUMBER) =>
                {
                    let far = if min.get_ref().unsigned_abs() > MAX_NUMBER {
                        min
                    } else {
                        max
                    };
                    return Err(self.err(
                        far.span(),
                        format!(
                            "`{}` is out of range: number bounds are at most {MAX_NUMBER} \
                             in size",
                            far.get_ref()
                        ),
                        Some("answers are read and summarized as f64, exact up to 2^53"),
                    ));
                }
                (Some(min), Some(max)) if min.get_ref() < max.get_ref() => {
                    let (min, max) = (*min.get_ref(), max);
                    let bins = self.bins(q.bins.as_ref(), min, *max.get_ref())?;
                    let values = *max.get_ref() as i128 - min as i128 + 1;
                    if self.exact && bins.is_empty() && values > MAX_EXACT_VALUES as i128 {
                        return Err(self.err(
                            max.span(),
                            format!(
                                "exact mode gives each value its own probability for at most \
                                 {MAX_EXACT_VALUES} values, and `{id}` has {values}"
                            ),
                            Some(&format!(
                                "name bins, e.g. bins = [[{min}, {mid}], [{next}, {}]], or use \
                                 [sampling] mode = \"sample\"",
                                max.get_ref(),
                                mid = min + ((*max.get_ref() - min) / 2),
                                next = min + ((*max.get_ref() - min) / 2) + 1,
                            )),
                        ));
                    }
                    QuestionKind::Number {
                        min,
                        max: *max.get_ref(),
                        bins,
                    }
                }
                (Some(min), Some(max)) => {
                    return Err(self.err(
                        max.span(),
                        format!(
                            "`max` ({}) must be larger than `min` ({})",
                            max.get_ref(),
                            min.get_ref()
                        ),
                        None,
                    ))
                }
                _ => return Err(need("`min` and `max`", "min = 0, max = 120")),
            },
            QuestionType::Choice => {
                let Some(options) = &q.options else {
                    return Err(need("`options`", "options = [{ code = \"A\", label = \"Democrat\" }, { code = \"B\", label = \"Republican\" }]"));
                };
                if options.get_ref().len() < 2 {
                    return Err(self.err(
                        options.span(),
                        "a choice needs at least 2 options",
                        None,
                    ));
                }
                let mut seen: Vec<&str> = Vec::new();
                for option in options.get_ref() {
                    let code = option.get_ref().code.as_str();
                    if code.trim().is_empty() || code.trim() != code {
                        return Err(self.err(
                            option.span(),
                            format!("option code `{code}` is empty or has spaces at its ends"),
                            None,
                        ));
                    }
                    if seen.contains(&code) {
                        return Err(self.err(
                            option.span(),
                            format!("option code `{code}` appears twice"),
                            Some("codes must differ"),
                        ));
                    }
                    seen.push(code);
                }
                let options = options
                    .get_ref()
                    .iter()
                    .map(|o| {
                        let o = o.get_ref();
                        ChoiceOption {
                            code: o.code.clone(),
                            label: o.label.clone(),
                            value: o.value,
                        }
                    })
                    .collect();
                QuestionKind::Choice { options }
            }
            QuestionType::YesNo => {
                let text = |v: &Option<Spanned<AttributeValue>>, default: &str| {
                    v.as_ref()
                        .map_or_else(|| default.to_string(), |v| v.get_ref().to_string())
                };
                let (yes, no) = (text(&q.yes, "Yes"), text(&q.no, "No"));
                if yes == no || yes.trim().is_empty() || no.trim().is_empty() {
                    let at = q.yes.as_ref().or(q.no.as_ref()).map_or(span, Spanned::span);
                    return Err(self.err(
                        at,
                        format!("`yes` (`{yes}`) and `no` (`{no}`) must be two different answers"),
                        None,
                    ));
                }
                QuestionKind::YesNo { yes, no }
            }
            QuestionType::Text => {
                let max_tokens = q
                    .max_tokens
                    .as_ref()
                    .map_or(DEFAULT_MAX_TOKENS, |m| *m.get_ref());
                if !(1..=32_768).contains(&max_tokens) {
                    let at = q.max_tokens.as_ref().map_or(span, Spanned::span);
                    return Err(self.err(
                        at,
                        format!("`max_tokens` must be from 1 to 32768, got `{max_tokens}`"),
                        None,
                    ));
                }
                QuestionKind::Text {
                    max_tokens: max_tokens as usize,
                }
            }
        })
    }
}
