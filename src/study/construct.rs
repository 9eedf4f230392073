//! Derived constructs: a score per answer set, the mean of some items, with reverse
//! coding for items worded the other way round.
//!
//! Surveys measure a construct (privacy concern) with several items so that one
//! oddly worded question does not decide the score; the workshop's PC and PPIT are
//! the means of four 1-7 items each.

/// One checked construct.
#[derive(Debug, Clone, PartialEq)]
pub struct Construct {
    /// Column name in the output (`PC`).
    pub id: String,
    /// Longer name for charts (`Internet privacy concern`).
    pub label: Option<String>,
    pub items: Vec<Item>,
}

/// One item of a construct.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub question_id: String,
    /// For a reverse-coded item, the scale's `min + max`: the score uses
    /// `min + max - x`, so 7 on a 1-7 scale counts as 1.
    pub reverse_sum: Option<f64>,
}

impl Construct {
    /// The mean of the items' values, reverse-coded where asked. `value_of` gives the
    /// numeric answer to a question id; any missing item makes the score missing,
    /// since a mean over fewer items would not be comparable.
    pub fn score(&self, value_of: impl Fn(&str) -> Option<f64>) -> Option<f64> {
        let mut sum = 0.0;
        for item in &self.items {
            let x = value_of(&item.question_id)?;
            sum += match item.reverse_sum {
                Some(total) => total - x,
                None => x,
            };
        }
        Some(sum / self.items.len() as f64)
    }

    /// `Label (ID)` when there is a label, else the id: for chart axes.
    pub fn display_name(&self) -> String {
        match &self.label {
            Some(label) => format!("{label} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn construct(reverse_last: bool) -> Construct {
        let item = |id: &str, rev: bool| Item {
            question_id: id.into(),
            reverse_sum: rev.then_some(8.0),
        };
        Construct {
            id: "PC".into(),
            label: None,
            items: vec![item("a", false), item("b", reverse_last)],
        }
    }

    #[test]
    fn mean_of_items() {
        let values = |id: &str| match id {
            "a" => Some(6.0),
            "b" => Some(7.0),
            _ => None,
        };
        assert_eq!(construct(false).score(values), Some(6.5));
        // 7 reversed on a 1-7 scale is 1.
        assert_eq!(construct(true).score(values), Some(3.5));
    }

    #[test]
    fn missing_item_makes_score_missing() {
        let values = |id: &str| (id == "a").then_some(6.0);
        assert_eq!(construct(false).score(values), None);
    }
}
