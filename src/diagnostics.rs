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

/// The text `personas` prints for an error: its chain of causes on one `error:` line (a cause
/// already said by the error above it is not repeated), then every hint of the chain on its
/// own `hint:` line. Errors carry their hint after `; hint: `, at the end of their message.
pub fn render(err: &anyhow::Error) -> String {
    let mut message = String::new();
    let mut hints: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let mut parts = text.split("; hint: ");
        let said = parts.next().unwrap_or_default().trim();
        if message.is_empty() {
            message = said.to_string();
        } else if !said.is_empty() && !message.contains(said) {
            message.push_str(": ");
            message.push_str(said);
        }
        for hint in parts.map(str::trim).filter(|h| !h.is_empty()) {
            if !hints.iter().any(|h| h == hint) {
                hints.push(hint.to_string());
            }
        }
    }
    let mut out = format!("error: {message}\n");
    for hint in hints {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_go_on_lines_of_their_own_after_the_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io)
            .context("cannot read `a.toml`; hint: check the path")
            .context("study.toml: model: cannot load; hint: run `personas models`");
        assert_eq!(
            render(&err),
            "error: study.toml: model: cannot load: cannot read `a.toml`: no such file\n\
             hint: run `personas models`\n\
             hint: check the path\n"
        );
    }

    #[test]
    fn a_cause_already_said_is_not_repeated_nor_its_hint() {
        let inner = anyhow::anyhow!("bad value; hint: use 1");
        let err = inner.context("file.toml:1:2: x: bad value; hint: use 1");
        assert_eq!(
            render(&err),
            "error: file.toml:1:2: x: bad value\nhint: use 1\n"
        );
        assert_eq!(render(&anyhow::anyhow!("plain")), "error: plain\n");
    }
}
