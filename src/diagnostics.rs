//! What every user-facing error needs: line and column of a byte offset, the dotted field
//! path at an offset of a TOML document, close matches for a misspelt name, and the hint that
//! says the fix ([`Hint`], [`Hinted`]). [`crate::error::render`] prints them all one way
//! (`error: ...` then each `hint: ...` on a line of its own).

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The dotted key path (`models.foo.sha256`) of the deepest key or value spanning `offset`,
/// found by re-parsing with spans; `None` for syntax errors or top-level positions.
pub fn toml_field_at(text: &str, offset: usize) -> Option<String> {
    // Depth first: a `[models.foo]` header table's span covers only its header line, so the
    // keys under it must be searched even when the table's own span does not match.
    fn find(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            let inner =
                matches!(value.get_ref(), toml::de::DeValue::Table(t) if find(t, offset, path));
            if inner || key.span().contains(&offset) || value.span().contains(&offset) {
                return true;
            }
            path.pop();
        }
        false
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Up to three of `names` close enough to `word` to be what was meant, closest first: within
/// an edit distance of 2 (a quarter of the name for long names), ignoring case, or, for words
/// of three letters or more, one containing the other (`smollm2-135` for `smollm2-135m`).
pub fn suggest<'a>(word: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let word = word.to_lowercase();
    let distance = |name: &str| {
        let name = name.to_lowercase();
        let within = word.chars().count() >= 3 && (name.contains(&word) || word.contains(&name));
        let d = strsim::levenshtein(&word, &name);
        (within || d <= 2.max(name.chars().count() / 4)).then_some(if within { 0 } else { d })
    };
    let mut close: Vec<(usize, &str)> = names
        .into_iter()
        .filter_map(|n| Some((distance(n)?, n)))
        .collect();
    close.sort();
    close.dedup();
    close.into_iter().take(3).map(|(_, n)| n).collect()
}

/// An error that may say how to fix it. Its `Display` says what went wrong; the hint, which
/// [`crate::error::render`] prints on a line of its own, says what to do about it.
pub trait Hint {
    fn hint(&self) -> Option<String>;
}

/// A message and its fix, for errors written where they are found (the CLI, the runner),
/// with the error that caused it kept as its source.
#[derive(Debug)]
pub struct Hinted {
    /// What went wrong; `None` says it with the source's words ([`Hinted::around`]).
    message: Option<String>,
    hint: String,
    source: Option<Source>,
}

type Source = Box<dyn std::error::Error + Send + Sync>;

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            message: Some(message.into()),
            hint: hint.into(),
            source: None,
        }
    }

    /// `error` itself, with what to do about it.
    pub fn around(error: impl Into<Source>, hint: impl Into<String>) -> Self {
        Hinted {
            message: None,
            hint: hint.into(),
            source: Some(error.into()),
        }
    }

    /// The same error, caused by `source` (said after the message).
    pub fn because(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl std::fmt::Display for Hinted {
    /// The message, then the source's own words after it, as the crate's other errors say
    /// their causes (`cannot resume `x`: No such file ...`): `to_string` keeps the reason.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.message, &self.source) {
            (Some(message), Some(source)) => write!(f, "{message}: {source}"),
            (Some(message), None) => f.write_str(message),
            (None, Some(source)) => source.fmt(f),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Around an error, the source is that error: `render` does not repeat its words, and
        // finds its own hints.
        let source: &(dyn std::error::Error + 'static) = self.source.as_deref()?;
        Some(source)
    }
}

impl Hint for Hinted {
    fn hint(&self) -> Option<String> {
        Some(self.hint.clone())
    }
}

/// `text` with every run of white space (line breaks included) made one space: an error is
/// one line, whatever toml, csv or the OS put in their messages.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Panics unless `printed` is what [`crate::error::render`] prints: one `error:` line, then `hint:` lines.
#[cfg(test)]
pub(crate) fn assert_printed_shape(printed: &str) {
    let mut lines = printed.trim_end().lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("error: "),
        "not an error line:\n{printed}"
    );
    assert!(
        !first.contains("hint:"),
        "a hint inside the error line:\n{printed}"
    );
    assert!(
        lines.all(|l| l.starts_with("hint: ") && l.len() > "hint: ".len()),
        "more than one error line and its hints:\n{printed}"
    );
}
