//! The population-share baseline (`[compare] baseline = "share"`): for each compared question
//! the model is asked, without any persona, how many of 100 people would give each option,
//! the count read exactly (its expected value over 0 to 100), and the counts normalized into a
//! distribution. A persona panel that does not beat this plain query adds nothing (one 2026
//! study finds it often does not).

use crate::chat::Message;
use crate::engine::generate::prefill;
use crate::engine::number::{Bins, Digits};
use crate::report::ShareBaseline;
use crate::study::Question;
use crate::Result;

use super::asker::*;
use super::format::*;

impl Asker<'_> {
    /// The baseline of every compared question, in question order; none without `[compare]
    /// baseline = "share"`.
    pub(super) fn share_baseline(&self) -> Result<Vec<ShareBaseline>> {
        let Some(compare) = self.study.compare.as_ref().filter(|c| c.share_baseline) else {
            return Ok(Vec::new());
        };
        let llama = &self.model.llama;
        let tokenizer = &self.model.tokenizer;
        let digits = Digits::new(0, 100, tokenizer, tokenizer.stop_ids())?;
        let bins = Bins::each(0, 100);
        let mut out = Vec::new();
        for q in &self.study.questions {
            if compare.answers_to(&q.id).is_none() {
                continue;
            }
            let mut counts = Vec::new();
            for option in q.options().unwrap_or_default() {
                let ids = self.ids(&[Message::user(share_prompt(q, &option))])?;
                let mut cache = llama.new_cache(1, ids.len() + 8)?;
                let logits = prefill(llama, &mut cache, &ids).map_err(engine)?;
                let scored = number_probs(llama, &cache, &logits, &digits, &bins)?;
                // The expected count over the values the walk resolved.
                let (mut sum, mut mass) = (0.0, 0.0);
                for (value, p) in &scored.probs {
                    if let Ok(v) = value.parse::<f64>() {
                        sum += v * p;
                        mass += p;
                    }
                }
                counts.push((option, if mass > 0.0 { sum / mass } else { 0.0 }));
            }
            let total: f64 = counts.iter().map(|c| c.1).sum();
            let shares = counts
                .iter()
                .map(|(o, c)| (o.clone(), if total > 0.0 { c / total } else { 0.0 }))
                .collect();
            out.push(ShareBaseline {
                question_id: q.id.clone(),
                counts,
                shares,
            });
        }
        Ok(out)
    }
}

/// "Of 100 people, how many would answer X", with the question as it is asked.
fn share_prompt(q: &Question, option: &str) -> String {
    let answer = match q.option_label(option) {
        Some(label) if label != option => format!("{option} ({label})"),
        _ => option.to_string(),
    };
    format!(
        "Think of 100 people asked this question:\n\n{}\n\nHow many of the 100 would answer {answer}? Answer with a single whole number from 0 to 100.",
        q.prompt()
    )
}
