//! Checks of `[population]`: who is listed, crossed and drawn, and that every
//! attribute has a usable, unique name.

use toml::Spanned;

use super::{Checker, Result, MAX_POPULATION};
use crate::study::draw::parse_draw;
use crate::study::population::{read_csv, Attributes, Population};
use crate::study::spec::{AttributeTable, PopulationSpec};

impl Checker<'_> {
    pub(super) fn population(&self, spec: Option<Spanned<PopulationSpec>>) -> Result<Population> {
        let Some(spec) = spec else {
            // No [population]: one respondent, described by the template alone (Demo 1).
            return Ok(Population {
                base: vec![Vec::new()],
                cross: Vec::new(),
                repeat: 1,
                draws: Vec::new(),
            });
        };
        let span = spec.span();
        let spec = spec.into_inner();
        let mut names: Vec<String> = Vec::new();

        let base: Vec<Attributes> = match (spec.people, spec.csv) {
            (Some(_), Some(csv)) => {
                return Err(self.err(
                    csv.span(),
                    "`people` and `csv` both list people",
                    Some("keep one of them"),
                ))
            }
            (Some(people), None) => self.people(people, &mut names)?,
            (None, Some(csv)) => {
                let path = self.base_dir.join(csv.get_ref());
                let rows = read_csv(&path)?;
                for (name, _) in &rows[0] {
                    self.check_name(csv.span(), name, "column", &names)?;
                    names.push(name.clone());
                }
                rows
            }
            (None, None) => Vec::new(),
        };
        let listed = !base.is_empty();

        let mut cross = Vec::new();
        if let Some(table) = &spec.cross {
            let mut entries: Vec<_> = table.get_ref().iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (key, levels) in entries {
                self.check_name(key.span(), key.get_ref(), "attribute", &names)?;
                if levels.get_ref().is_empty() {
                    return Err(self.err(
                        levels.span(),
                        format!("factor `{}` has no levels", key.get_ref()),
                        None,
                    ));
                }
                names.push(key.get_ref().clone());
                let values = levels
                    .get_ref()
                    .iter()
                    .map(|v| v.get_ref().clone())
                    .collect();
                cross.push((key.get_ref().clone(), values));
            }
        }

        let base = match spec.size {
            Some(size) if listed || spec.cross.is_some() => {
                return Err(self.err(
                    size.span(),
                    "`size` cannot be combined with `people`, `csv` or `cross`",
                    Some("the size follows from the listed people and factors; use `repeat` for copies"),
                ))
            }
            Some(size) if *size.get_ref() == 0 => {
                return Err(self.err(size.span(), "`size` is 0", Some("a study needs at least one respondent")))
            }
            Some(size) => vec![Vec::new(); (*size.get_ref()).min(MAX_POPULATION as u64 + 1) as usize],
            None if listed => base,
            None if spec.cross.is_some() => vec![Vec::new()],
            None => {
                return Err(self.err(
                    span,
                    "the population lists nobody",
                    Some("add `size = 50` with [population.draw], `people = [...]`, `csv = \"people.csv\"` or [population.cross]"),
                ))
            }
        };

        let repeat = match spec.repeat {
            Some(r) if *r.get_ref() == 0 => {
                return Err(self.err(
                    r.span(),
                    "`repeat` is 0",
                    Some("use 1 or more copies of the panel"),
                ))
            }
            Some(r) => (*r.get_ref()).min(MAX_POPULATION as u64 + 1) as usize,
            None => 1,
        };

        let mut draws = Vec::new();
        if let Some(table) = spec.draw {
            let mut entries: Vec<_> = table.into_inner().into_iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (key, value) in entries {
                self.check_name(key.span(), key.get_ref(), "attribute", &names)?;
                let draw = parse_draw(value.get_ref())
                    .map_err(|(m, h)| self.err(value.span(), m, h.as_deref()))?;
                names.push(key.get_ref().clone());
                draws.push((key.into_inner(), draw));
            }
        }

        let population = Population {
            base,
            cross,
            repeat,
            draws,
        };
        let size = population.size();
        if size > MAX_POPULATION {
            let size = match size {
                usize::MAX => "over 2^64".to_string(),
                n => n.to_string(),
            };
            return Err(self.err(
                span,
                format!(
                    "the population has {size} people, more than the limit of {MAX_POPULATION}"
                ),
                Some("use `samples` for repeated answers from the same people"),
            ));
        }
        Ok(population)
    }

    /// Inline people: same attributes for everyone, in the first person's order.
    fn people(
        &self,
        people: Spanned<Vec<Spanned<AttributeTable>>>,
        names: &mut Vec<String>,
    ) -> Result<Vec<Attributes>> {
        if people.get_ref().is_empty() {
            return Err(self.err(
                people.span(),
                "`people` is empty",
                Some("add one table of attributes per person"),
            ));
        }
        let mut rows: Vec<Attributes> = Vec::new();
        for (i, person) in people.into_inner().into_iter().enumerate() {
            let span = person.span();
            let mut entries: Vec<_> = person.into_inner().into_iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            if i == 0 {
                for (key, _) in &entries {
                    self.check_name(key.span(), key.get_ref(), "attribute", names)?;
                    names.push(key.get_ref().clone());
                }
            }
            let first: Vec<&str> = rows.first().map_or_else(
                || entries.iter().map(|(k, _)| k.get_ref().as_str()).collect(),
                |r| r.iter().map(|(k, _)| k.as_str()).collect(),
            );
            if let Some((key, _)) = entries
                .iter()
                .find(|(k, _)| !first.contains(&k.get_ref().as_str()))
            {
                return Err(self.err(
                    key.span(),
                    format!(
                        "attribute `{}` is not given for the first person",
                        key.get_ref()
                    ),
                    Some("every person needs the same attributes"),
                ));
            }
            let mut row: Attributes = Vec::new();
            for name in &first {
                let Some((_, value)) = entries.iter().find(|(k, _)| k.get_ref() == name) else {
                    return Err(self.err(
                        span,
                        format!("person {} lacks attribute `{name}`", i + 1),
                        Some("every person needs the same attributes"),
                    ));
                };
                row.push((name.to_string(), value.get_ref().clone()));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}
