//! Errors in study files, each one line long: where (file, line, column), which field and
//! what is wrong, with a hint ([`Hint`]) that says the fix when there is one.
//!
//! A typo should cost the user one glance, so every message points at the exact spot.
//! Parse errors come with toml's byte spans; validation errors reuse the spans kept by
//! `toml::Spanned` fields, and the field path (`questions[2].type`) is recovered from
//! the span by walking toml's spanned document tree, so no check has to spell it out.

use std::cell::OnceCell;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostics::{one_line, Hint};

/// Everything that can go wrong while reading and checking a study.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A file could not be read at all (study file, population CSV).
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is wrong; see [`Diagnostic`].
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl Hint for StudyError {
    fn hint(&self) -> Option<String> {
        self.diagnostic().and_then(|d| d.hint.clone())
    }
}

impl StudyError {
    /// The diagnostic, when the error is about content rather than reading.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            StudyError::Invalid(d) => Some(d),
            StudyError::Read { .. } => None,
        }
    }
}

/// One problem in one file, printed as `file:line:column: field: message`; `hint` is the
/// fix, printed on a line of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column in characters, when known.
    pub column: Option<usize>,
    /// Dotted path of the offending field (`questions[2].type`) or CSV column.
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        // Messages from toml and csv sometimes carry newlines; the contract is one line.
        write!(f, "{}", one_line(&self.message))
    }
}

/// Builds a one-line error from a message and an optional hint.
pub(crate) fn invalid(
    file: &Path,
    line: Option<usize>,
    field: Option<String>,
    message: impl Into<String>,
    hint: Option<String>,
) -> StudyError {
    StudyError::Invalid(Box::new(Diagnostic {
        file: file.to_path_buf(),
        line,
        column: None,
        field,
        message: message.into(),
        hint,
    }))
}

/// The study file's text, used to turn byte spans into line, column and field path.
pub(crate) struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    tree: OnceCell<Option<Spanned<DeTable<'a>>>>,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Source {
            file,
            text,
            tree: OnceCell::new(),
        }
    }

    /// An error at `span`, with the field path found from the document tree.
    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> StudyError {
        let field = self.field_at(span.start);
        self.error_with_field(span, field, message, hint)
    }

    /// An error at `span` naming `field` explicitly (for spans the tree cannot resolve,
    /// such as a table that is missing a key).
    pub fn error_with_field(
        &self,
        span: Range<usize>,
        field: Option<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> StudyError {
        let (line, column) = crate::diagnostics::line_col(self.text, span.start);
        StudyError::Invalid(Box::new(Diagnostic {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field,
            message: message.into(),
            hint,
        }))
    }

    /// Converts a toml parse or type error, adding a hint for the common cases.
    pub fn toml_error(&self, err: &toml::de::Error) -> StudyError {
        let span = err.span().unwrap_or(0..0);
        let message = polish(err.message().trim());
        let hint = toml_hint(&message);
        let field = self.field_at(span.start);
        self.error_with_field(span, field, message, hint)
    }

    /// The dotted path of the deepest key or value containing byte `pos`.
    pub fn field_at(&self, pos: usize) -> Option<String> {
        let tree = self.tree.get_or_init(|| DeTable::parse(self.text).ok());
        let tree = tree.as_ref()?;
        let mut path = String::new();
        table_path(tree.get_ref(), pos, &mut path);
        (!path.is_empty()).then_some(path)
    }
}

fn table_path(table: &DeTable<'_>, pos: usize, path: &mut String) {
    // Tables written as `[header]` sections have spans that cover only part of their
    // text, so when no entry contains `pos` we fall back to the last entry starting
    // before it: that is the key whose value the position belongs to.
    let contains = |r: Range<usize>| r.start <= pos && pos < r.end.max(r.start + 1);
    let mut best: Option<(&Spanned<std::borrow::Cow<'_, str>>, &Spanned<DeValue<'_>>)> = None;
    for (key, value) in table.iter() {
        if contains(key.span()) {
            push_key(path, key.get_ref());
            return;
        }
        if contains(value.span()) {
            push_key(path, key.get_ref());
            value_path(value, pos, path);
            return;
        }
        let start = key.span().start.min(value.span().start);
        if start <= pos && best.is_none_or(|(k, v)| k.span().start.min(v.span().start) < start) {
            best = Some((key, value));
        }
    }
    if let Some((key, value)) = best {
        if matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_)) {
            push_key(path, key.get_ref());
            value_path(value, pos, path);
        }
    }
}

fn value_path(value: &Spanned<DeValue<'_>>, pos: usize, path: &mut String) {
    match value.get_ref() {
        DeValue::Table(table) => table_path(table, pos, path),
        DeValue::Array(items) => {
            // Array-of-tables elements: pick the last element starting at or before `pos`.
            let index = items.iter().rposition(|item| item.span().start <= pos);
            if let Some(i) = index {
                path.push_str(&format!("[{i}]"));
                value_path(&items[i], pos, path);
            }
        }
        _ => {}
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

/// Puts serde's type names in words and quoted values in backticks.
fn polish(message: &str) -> String {
    let mut message = message
        .replace("expected u64", "expected a whole number of 0 or more")
        .replace("expected i64", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected `true` or `false`");
    // serde writes `invalid type: string "7"`; values go in backticks here.
    if let Some(rest) = message.strip_prefix("invalid type: string \"") {
        if let Some(end) = rest.find("\", ") {
            message = format!(
                "invalid type: string `\"{}\"`{}",
                &rest[..end],
                &rest[end + 1..]
            );
        }
    }
    message
}

/// Hints for toml's own messages, which say what is wrong but not what to write.
fn toml_hint(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("check the spelling; docs/study-format.md lists every field".into())
    } else if message.starts_with("unknown variant") {
        Some("use one of the listed values, in quotes".into())
    } else if message.starts_with("missing field") {
        Some("add the field; docs/study-format.md shows an example".into())
    } else if message.starts_with("invalid type: boolean") {
        Some("write text in double quotes, or a number".into())
    } else if message.starts_with("invalid type: string") && !message.contains("expected a string")
    {
        Some("remove the quotes around the value".into())
    } else if message.contains("expected a string") || message.contains("expected string") {
        Some("put text in double quotes".into())
    } else if message.contains("duplicate key") {
        Some("each key may appear once per table".into())
    } else if message.contains("must be quoted") {
        Some("put text in double quotes".into())
    } else if message.contains(", expected")
        || message.starts_with("unclosed")
        || message.starts_with("invalid")
        || message.starts_with("unexpected")
    {
        Some("the study is TOML: check brackets and quotes near this line (docs/study-format.md has examples)".into())
    } else {
        None
    }
}
