//! The order a question's options are presented in, and the instruction that lists them.
//!
//! Survey answers of language models lean on where an option stands (Dominguez-Olmedo et al.,
//! NeurIPS 2024), so a study can present the options `reversed`, or in a `random` order per
//! respondent (seeded): a choice's options shuffled, a scale's direction drawn. Options keep
//! their codes, so answers are the canonical options whatever order the respondent saw.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::kind::QuestionKind;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// As the study lists them.
    #[default]
    Fixed,
    /// Last first.
    Reversed,
    /// Per respondent, seeded: a shuffle of a choice's options, a direction for a scale.
    Random,
    /// Exact mode: every respondent is asked in each order of [`all_orders`], and the option
    /// probabilities are averaged over them.
    All,
}

/// Choices with at most this many options are asked in every permutation under `all`; longer
/// ones in a balanced design (see [`all_orders`]).
const MAX_PERMUTED: usize = 4;

/// The orders `all` asks in: both directions of a scale or yes/no; every permutation of a
/// choice of up to four options (24 orders); for longer choices the cyclic shifts and their
/// reverses (2k orders), in which every option stands in every position equally often.
pub fn all_orders(kind: &QuestionKind) -> Vec<Vec<usize>> {
    let identity = presented(Order::Fixed, kind, 0);
    let k = identity.len();
    match kind {
        QuestionKind::Choice { .. } if k <= MAX_PERMUTED => {
            let mut out = Vec::new();
            permutations(&mut identity.clone(), 0, &mut out);
            out
        }
        QuestionKind::Choice { .. } => (0..k)
            .flat_map(|shift| {
                let cyclic: Vec<usize> = (0..k).map(|i| (i + shift) % k).collect();
                let reversed: Vec<usize> = cyclic.iter().rev().copied().collect();
                [cyclic, reversed]
            })
            .collect(),
        _ => {
            let reversed = identity.iter().rev().copied().collect();
            vec![identity, reversed]
        }
    }
}

/// Every permutation of `items[at..]` after the fixed `items[..at]`, in lexicographic order of
/// the swaps (the identity first).
fn permutations(items: &mut Vec<usize>, at: usize, out: &mut Vec<Vec<usize>>) {
    if at + 1 >= items.len() {
        out.push(items.clone());
        return;
    }
    for i in at..items.len() {
        items.swap(at, i);
        permutations(items, at + 1, out);
        items.swap(at, i);
    }
}

/// The option indices (into [`super::Question::options`]'s order) as presented, for
/// `order` and the respondent's `seed`. A scale (and yes/no) is shown in one direction or the
/// other, never shuffled: "from 1 to 7" with the numbers out of order would not read.
pub fn presented(order: Order, kind: &QuestionKind, seed: u64) -> Vec<usize> {
    let n = match kind {
        QuestionKind::Scale { min, max, .. } => (max - min + 1) as usize,
        QuestionKind::Choice { options } => options.len(),
        QuestionKind::YesNo { .. } => 2,
        QuestionKind::Number { .. } | QuestionKind::Text { .. } => 0,
    };
    let mut shown: Vec<usize> = (0..n).collect();
    // The default yes/no wording asks "Yes or No": Yes (option 1) stands first.
    if matches!(kind, QuestionKind::YesNo { yes, no } if yes == "Yes" && no == "No") {
        shown.reverse();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match (order, kind) {
        (Order::Fixed | Order::All, _) => {}
        (Order::Reversed, _) => shown.reverse(),
        (Order::Random, QuestionKind::Choice { .. }) => shown.shuffle(&mut rng),
        (Order::Random, _) => {
            if rng.random_bool(0.5) {
                shown.reverse();
            }
        }
    }
    shown
}

/// The instruction a question gets when the study file does not give one.
pub fn default_instruction(kind: &QuestionKind) -> String {
    let n = presented(Order::Fixed, kind, 0);
    instruction_in(kind, &n)
}

/// The default instruction with the options in the order `shown` ([`presented`]).
pub fn instruction_in(kind: &QuestionKind, shown: &[usize]) -> String {
    // A scale runs up unless its first number shown is not its lowest; yes/no lists Yes
    // (option 1) first or second.
    let reversed = shown.first().is_some_and(|&i| i > 0) && shown.len() > 1;
    let yes_first = shown.first() == Some(&1);
    match kind {
        QuestionKind::Scale {
            min,
            max,
            min_label,
            max_label,
        } => {
            let end = |x: &i64, label: &Option<String>| match label {
                Some(l) => format!("{x} ({l})"),
                None => x.to_string(),
            };
            let (from, to) = (end(min, min_label), end(max, max_label));
            let (from, to) = if reversed { (to, from) } else { (from, to) };
            format!("Answer with a single number from {from} to {to}.")
        }
        QuestionKind::Number { min, max, .. } => {
            format!("Answer with a single whole number from {min} to {max}.")
        }
        QuestionKind::Choice { options } => {
            let names: Vec<String> = shown
                .iter()
                .map(|&i| {
                    let o = &options[i];
                    match &o.label {
                        Some(label) => format!("{} ({label})", o.code),
                        None => o.code.clone(),
                    }
                })
                .collect();
            format!("Answer with {}.", or_list(&names))
        }
        QuestionKind::YesNo { yes, no } if yes == "Yes" && no == "No" => {
            if yes_first {
                "Answer Yes or No.".into()
            } else {
                "Answer No or Yes.".into()
            }
        }
        QuestionKind::YesNo { yes, no } => {
            if yes_first {
                format!("Answer {yes} for Yes or {no} for No.")
            } else {
                format!("Answer {no} for No or {yes} for Yes.")
            }
        }
        QuestionKind::Text { .. } => String::new(),
    }
}

fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::ChoiceOption;

    fn choice(codes: &[&str]) -> QuestionKind {
        QuestionKind::Choice {
            options: codes
                .iter()
                .map(|c| ChoiceOption {
                    code: c.to_string(),
                    label: None,
                    value: None,
                })
                .collect(),
        }
    }

    #[test]
    fn all_orders_are_balanced() {
        let abc = choice(&["A", "B", "C"]);
        let orders = all_orders(&abc);
        assert_eq!(orders.len(), 6);
        assert_eq!(orders[0], [0, 1, 2]);
        let six = choice(&["A", "B", "C", "D", "E", "F"]);
        for orders in [all_orders(&abc), all_orders(&six)] {
            // Every option stands in every position equally often.
            let k = orders[0].len();
            for position in 0..k {
                let mut seen = vec![0; k];
                for o in &orders {
                    seen[o[position]] += 1;
                }
                assert!(seen.iter().all(|&n| n == seen[0]), "{orders:?}");
            }
        }
        assert_eq!(all_orders(&six).len(), 12);
        let yes_no = QuestionKind::YesNo {
            yes: "Yes".into(),
            no: "No".into(),
        };
        // Yes first as the default wording asks, then No first.
        assert_eq!(all_orders(&yes_no), [vec![1, 0], vec![0, 1]]);
        assert_eq!(instruction_in(&yes_no, &[1, 0]), "Answer Yes or No.");
        let coded = QuestionKind::YesNo {
            yes: "1".into(),
            no: "0".into(),
        };
        assert_eq!(default_instruction(&coded), "Answer 0 for No or 1 for Yes.");
        assert_eq!(presented(Order::Fixed, &coded, 0), [0, 1]);
    }

    #[test]
    fn orders_list_the_options_as_asked() {
        let abc = choice(&["A", "B", "C", "D"]);
        assert_eq!(default_instruction(&abc), "Answer with A, B, C or D.");
        let back = presented(Order::Reversed, &abc, 1);
        assert_eq!(instruction_in(&abc, &back), "Answer with D, C, B or A.");
        // Random: seeded per respondent, a permutation, and not the same for every seed.
        let one = presented(Order::Random, &abc, 7);
        assert_eq!(one, presented(Order::Random, &abc, 7));
        let mut sorted = one.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3]);
        assert!((0..20).any(|s| presented(Order::Random, &abc, s) != one));

        let scale = QuestionKind::Scale {
            min: 1,
            max: 7,
            min_label: Some("Disagree".into()),
            max_label: Some("Agree".into()),
        };
        let back = presented(Order::Reversed, &scale, 0);
        assert_eq!(
            instruction_in(&scale, &back),
            "Answer with a single number from 7 (Agree) to 1 (Disagree)."
        );
        // A random scale runs one way or the other, both seen over respondents.
        let ways: std::collections::HashSet<String> = (0..20)
            .map(|s| instruction_in(&scale, &presented(Order::Random, &scale, s)))
            .collect();
        assert_eq!(ways.len(), 2);

        let yes_no = QuestionKind::YesNo {
            yes: "Yes".into(),
            no: "No".into(),
        };
        let back = presented(Order::Reversed, &yes_no, 0);
        assert_eq!(instruction_in(&yes_no, &back), "Answer No or Yes.");
    }

    fn error(study: &str) -> String {
        let err = crate::study::parse(study, std::path::Path::new("study.toml")).unwrap_err();
        crate::error::render(&err)
    }

    const STUDY: &str = "[persona]\ntemplate = \"x\"\n[[questions]]\nid = \"q\"\ntype = \"choice\"\noptions = [\"a\", \"b\"]\ntext = \"Which?\"\n";

    #[test]
    fn orders_that_cannot_apply_are_refused_where_they_are_written() {
        let study = |extra: &str| format!("{STUDY}{extra}");
        assert_eq!(
            error(&study("order = \"random\"\ninstruction = \"Pick.\"\n")),
            "error: study.toml:9:15: questions[0].instruction: a question with its own instruction keeps its options' order\nhint: `order` rewrites the default instruction: remove `instruction`, or set order = \"fixed\" on this question\n"
        );
        let together = format!("[ask]\nmode = \"together\"\norder = \"reversed\"\n{STUDY}");
        assert!(error(&together).starts_with(
            "error: study.toml:3:9: ask.order: `order` applies to questions asked one by one"
        ));
        let text = STUDY.replace(
            "type = \"choice\"\noptions = [\"a\", \"b\"]",
            "type = \"text\"",
        );
        assert!(error(&format!("{text}order = \"reversed\"\n"))
            .contains("a text question has no options to order"));
        // The study-wide order passes over a text question, and applies to the choice.
        let both = format!(
            "[ask]\norder = \"reversed\"\n{STUDY}{}",
            &text[text.find("[[questions]]").unwrap()..].replace("\"q\"", "\"t\"")
        );
        let parsed = crate::study::parse(&both, std::path::Path::new("study.toml")).unwrap();
        assert_eq!(parsed.questions[0].order, Order::Reversed);
        assert_eq!(parsed.questions[1].order, Order::Fixed);
        assert_eq!(
            parsed.questions[0].prompt_for(3),
            "Which?\nAnswer with b or a."
        );
        // `all` averages exact distributions, one order at a time.
        let all = format!("[ask]\norder = \"all\"\n{STUDY}");
        assert!(
            error(&all).contains("order = \"all\" averages exact distributions over the orders")
        );
        let history = format!(
            "[ask]\nkeep_history = true\norder = \"all\"\n[sampling]\nmode = \"exact\"\n{STUDY}"
        );
        assert!(error(&history).contains("which a conversation with history cannot"));
        let exact = format!("[ask]\norder = \"all\"\n[sampling]\nmode = \"exact\"\n{STUDY}");
        let parsed = crate::study::parse(&exact, std::path::Path::new("study.toml")).unwrap();
        assert_eq!(
            parsed.question_slots(),
            [(0, Some(vec![0, 1])), (0, Some(vec![1, 0]))]
        );
        // `--mode sample` overriding such a study is refused before a model loads, and its
        // questions are asked once each.
        let mut sampled = parsed;
        sampled.sampling.mode = crate::study::Mode::Sample;
        assert_eq!(sampled.question_slots(), [(0, None)]);
        let refused = crate::runner::check(&sampled).unwrap_err().to_string();
        assert!(
            refused.contains("order = \"all\" averages exact distributions, and this run samples"),
            "{refused}"
        );
    }
}
