//! What every user-facing error needs from the text it points into: line and column of a byte
//! offset, the dotted field path at an offset of a TOML document, and close matches for a
//! misspelt name.

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
