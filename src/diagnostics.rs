//! What every user-facing error needs: line and column of a byte offset, the dotted field
//! path at an offset of a TOML document, close matches for a misspelt name, and the one way
//! errors are printed (`error: ...` then each `hint: ...` on a line of its own).

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
/// [`render`] prints on a line of its own, says what to do about it.
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
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
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

    /// The same error, caused by `source` (printed after the message by [`render`]).
    pub fn because(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.message, &self.source) {
            (Some(message), _) => f.write_str(message),
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

/// The hint of one error of a chain, for the error types that can carry one.
fn hint_of(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    macro_rules! first_of {
        ($($kind:ty),*) => {
            $(if let Some(e) = err.downcast_ref::<$kind>() {
                return e.hint();
            })*
        };
    }
    first_of!(
        crate::Error,
        Hinted,
        crate::source::RegistryError,
        crate::source::HubError,
        crate::model::LoadError,
        crate::engine::EngineError,
        crate::study::StudyError
    );
    None
}

/// The text `personas` prints for an error: its chain of causes on one `error:` line (a cause
/// already said by the error above it is not repeated), then every hint of the chain on its
/// own `hint:` line, the outermost first.
pub fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut hints: Vec<String> = Vec::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        let said = e.to_string();
        let said = said.trim();
        if message.is_empty() {
            message = said.to_string();
        } else if !said.is_empty() && !message.contains(said) {
            message.push_str(": ");
            message.push_str(said);
        }
        if let Some(hint) = hint_of(e).map(|h| one_line(&h)) {
            if !hint.is_empty() && !hints.contains(&hint) {
                hints.push(hint);
            }
        }
        cause = e.source();
    }
    // Messages from toml, csv and the OS sometimes break lines; an error is one line.
    let message: Vec<&str> = message.lines().map(str::trim).collect();
    let mut out = format!("error: {}\n", message.join(" "));
    for hint in hints {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

/// `text` with every run of white space (line breaks included) made one space: an error is
/// one line, whatever toml, csv or the OS put in their messages.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Panics unless `printed` is what [`render`] prints: one `error:` line, then `hint:` lines.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RegistryError;

    #[test]
    fn hints_go_on_lines_of_their_own_after_the_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Hinted::new("study.toml: model: cannot load", "run `personas models`")
            .because(Hinted::new("cannot read `a.toml`", "check the path").because(io));
        assert_eq!(err.to_string(), "study.toml: model: cannot load");
        assert_eq!(
            render(&err),
            "error: study.toml: model: cannot load: cannot read `a.toml`: no such file\n\
             hint: run `personas models`\n\
             hint: check the path\n"
        );
    }

    #[test]
    fn typed_errors_keep_their_hints_under_any_wrapping() {
        let missing = || RegistryError::MissingPath {
            path: "m.gguf".into(),
        };
        let printed = "error: study.toml: model: model path `m.gguf` does not exist\n\
                       hint: check the path, or name a preset (`personas models` lists them)\n";
        let wrapped =
            anyhow::Error::from(crate::Error::from(missing())).context("study.toml: model");
        assert_eq!(render(wrapped.as_ref()), printed);
        // Around an error, its words are said once and both hints are kept.
        let around = Hinted::around(crate::Error::from(missing()), "or this");
        assert_eq!(
            render(&around),
            "error: model path `m.gguf` does not exist\nhint: or this\n\
             hint: check the path, or name a preset (`personas models` lists them)\n"
        );
        assert_eq!(render(anyhow::anyhow!("plain").as_ref()), "error: plain\n");
    }

    #[test]
    fn a_cause_already_said_is_not_repeated_nor_its_hint() {
        let inner = Hinted::new("bad value", "use 1");
        let err = Hinted::new("file.toml:1:2: x: bad value", "use 1").because(inner);
        assert_eq!(
            render(&err),
            "error: file.toml:1:2: x: bad value\nhint: use 1\n"
        );
    }
}
