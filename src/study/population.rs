//! Who answers: people listed inline, read from a CSV file, crossed from factors, or
//! drawn from distributions, and any mix of these.
//!
//! Generation is deterministic. Each drawn attribute has its own ChaCha stream seeded
//! from the study seed and the attribute's name, so adding an attribute to a study does
//! not change the values already drawn for the others.

use std::io::Write;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::draw::Draw;
use super::error::{invalid, StudyError};
use super::value::AttributeValue;
use super::{derive_seed, is_identifier};

/// Ordered attribute list of one person (the order of the study file or CSV header).
pub type Attributes = Vec<(String, AttributeValue)>;

/// One simulated respondent.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// 1-based respondent number, stable for a given study file and seed.
    pub id: usize,
    pub attributes: Attributes,
    /// The persona template rendered for this person.
    pub persona: String,
}

impl Person {
    /// The value of attribute `name`, if the person has it.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A checked population recipe; [`Population::generate`] makes the people.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Population {
    /// Listed people (inline or CSV); without any, `size` attribute-less rows.
    pub(crate) base: Vec<Attributes>,
    pub(crate) cross: Vec<(String, Vec<AttributeValue>)>,
    pub(crate) repeat: usize,
    pub(crate) draws: Vec<(String, Draw)>,
}

impl Population {
    /// Number of people the recipe makes; `usize::MAX` when that does not fit (32 crossed
    /// factors of 4 levels are already 2^64 people).
    pub fn size(&self) -> usize {
        self.cross
            .iter()
            .map(|(_, levels)| levels.len())
            .chain([self.base.len(), self.repeat])
            .fold(1, usize::saturating_mul)
    }

    /// Attribute names in output order: listed, crossed, then drawn.
    pub fn attribute_names(&self) -> Vec<String> {
        let listed = self
            .base
            .first()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone());
        let crossed = self.cross.iter().map(|(k, _)| k.clone());
        let drawn = self.draws.iter().map(|(k, _)| k.clone());
        listed.chain(crossed).chain(drawn).collect()
    }

    /// The attribute lists of every person, in respondent order: copies of the panel
    /// (`repeat`) outermost, then listed people, then factor combinations with the
    /// last factor varying fastest.
    pub fn generate(&self, seed: u64) -> Vec<Attributes> {
        let mut people = Vec::with_capacity(self.size());
        for _ in 0..self.repeat {
            for base in &self.base {
                for combo in cross_product(&self.cross) {
                    let mut person = base.clone();
                    person.extend(combo);
                    people.push(person);
                }
            }
        }
        for (name, draw) in &self.draws {
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("population/{name}"), 0));
            for person in &mut people {
                person.push((name.clone(), draw.sample(&mut rng)));
            }
        }
        people
    }
}

fn cross_product(factors: &[(String, Vec<AttributeValue>)]) -> Vec<Attributes> {
    let mut combos: Vec<Attributes> = vec![Vec::new()];
    for (name, levels) in factors {
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                levels.iter().map(move |level| {
                    let mut next = combo.clone();
                    next.push((name.clone(), level.clone()));
                    next
                })
            })
            .collect();
    }
    combos
}

/// Columns that `personas population` writes besides the attributes; reading such a
/// file back skips them, so a written population can be reused as `csv = …`.
pub const GENERATED_COLUMNS: [&str; 2] = ["respondent", "persona"];

/// Reads a population CSV: a header of attribute names, then one row per person.
pub(crate) fn read_csv(path: &Path) -> Result<Vec<Attributes>, StudyError> {
    let file = std::fs::File::open(path).map_err(|source| StudyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let csv_error = |e: csv::Error| {
        let line = e.position().map(|p| p.line() as usize);
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => {
                format!("row has {len} fields but the header has {expected_len}")
            }
            csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".into(),
            _ => e.to_string(),
        };
        let hint = match e.kind() {
            csv::ErrorKind::UnequalLengths { .. } => {
                Some("quote values that contain commas, e.g. \"Smith, Jo\"".to_string())
            }
            csv::ErrorKind::Utf8 { .. } => Some(
                "save the file as UTF-8 (spreadsheets: \"CSV UTF-8\"; or `iconv -f latin1 -t utf-8`)"
                    .to_string(),
            ),
            _ => None,
        };
        invalid(path, line, None, message, hint)
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    let mut keep = Vec::new();
    for (i, name) in header.iter().enumerate() {
        if GENERATED_COLUMNS.contains(&name) {
            continue;
        }
        if !is_identifier(name) {
            return Err(invalid(
                path,
                Some(1),
                None,
                format!("column `{name}` is not a valid attribute name"),
                Some(
                    "use letters, digits and `_`, starting with a letter, e.g. `job_title`".into(),
                ),
            ));
        }
        if keep.iter().any(|(_, n): &(usize, &str)| *n == name) {
            return Err(invalid(
                path,
                Some(1),
                None,
                format!("column `{name}` appears twice"),
                Some("give each column its own name".into()),
            ));
        }
        keep.push((i, name));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        rows.push(
            keep.iter()
                .map(|(i, name)| (name.to_string(), AttributeValue::from_cell(&record[*i])))
                .collect(),
        );
    }
    if rows.is_empty() {
        return Err(invalid(
            path,
            Some(1),
            None,
            "the file has no rows",
            Some("add one row per person below the header".into()),
        ));
    }
    Ok(rows)
}

/// Writes people as CSV: `respondent`, the attributes, then the rendered `persona`.
pub fn write_population_csv<W: Write>(people: &[Person], out: W) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    let Some(first) = people.first() else {
        return writer.flush().map_err(Into::into);
    };
    let mut header = vec!["respondent".to_string()];
    header.extend(first.attributes.iter().map(|(k, _)| k.clone()));
    header.push("persona".into());
    writer.write_record(&header)?;
    for person in people {
        let mut row = vec![person.id.to_string()];
        row.extend(person.attributes.iter().map(|(_, v)| v.to_string()));
        row.push(person.persona.clone());
        writer.write_record(&row)?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn(draws: Vec<(&str, Draw)>, size: usize) -> Population {
        Population {
            base: vec![Vec::new(); size],
            cross: Vec::new(),
            repeat: 1,
            draws: draws.into_iter().map(|(k, d)| (k.to_string(), d)).collect(),
        }
    }

    fn column(people: &[Attributes], i: usize) -> Vec<AttributeValue> {
        people.iter().map(|p| p[i].1.clone()).collect()
    }

    #[test]
    fn uniform_int_covers_its_range_evenly() {
        let people =
            drawn(vec![("age", Draw::UniformInt { min: 18, max: 64 })], 10_000).generate(42);
        let ages: Vec<i64> = column(&people, 0)
            .iter()
            .map(|v| v.as_f64().unwrap() as i64)
            .collect();
        assert_eq!(*ages.iter().min().unwrap(), 18);
        assert_eq!(*ages.iter().max().unwrap(), 64);
        let mean = ages.iter().sum::<i64>() as f64 / ages.len() as f64;
        // Mean 41, sd of the mean about 13.6 / 100.
        assert!((mean - 41.0).abs() < 0.5, "mean {mean}");
    }

    #[test]
    fn weighted_choice_follows_its_weights() {
        let values = ["D", "R", "I"]
            .map(|v| AttributeValue::Text(v.into()))
            .to_vec();
        let draw = Draw::Choice {
            values,
            weights: vec![0.45, 0.45, 0.1],
        };
        let people = drawn(vec![("party", draw)], 10_000).generate(7);
        let share = |v: &str| {
            column(&people, 0)
                .iter()
                .filter(|x| x.to_string() == v)
                .count() as f64
                / 10_000.0
        };
        // Binomial sd at p = 0.45 is 0.005; allow 4 sd.
        assert!((share("D") - 0.45).abs() < 0.02, "{}", share("D"));
        assert!((share("R") - 0.45).abs() < 0.02);
        assert!((share("I") - 0.10).abs() < 0.012);
    }

    #[test]
    fn bounded_normal_stays_in_bounds() {
        let draw = Draw::Normal {
            mean: 50.0,
            sd: 10.0,
            min: 30.0,
            max: 90.0,
            decimals: Some(0),
        };
        let people = drawn(vec![("x", draw)], 10_000).generate(1);
        let xs: Vec<f64> = column(&people, 0)
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(xs
            .iter()
            .all(|x| (30.0..=90.0).contains(x) && x.fract() == 0.0));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        // Truncating 2 sd below the mean lifts it by about 0.055 sd.
        assert!((mean - 50.55).abs() < 0.4, "mean {mean}");
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!((sd - 9.42).abs() < 0.3, "sd {sd}");
    }

    #[test]
    fn crossed_factors_make_every_combination() {
        let text = |v: &str| AttributeValue::Text(v.into());
        let population = Population {
            base: vec![Vec::new()],
            cross: vec![
                (
                    "job".into(),
                    vec![text("pilot"), text("logger"), text("sculptor")],
                ),
                ("gender".into(), vec![text("female"), text("male")]),
            ],
            repeat: 2,
            draws: Vec::new(),
        };
        let people = population.generate(0);
        assert_eq!(population.size(), 12);
        assert_eq!(people.len(), 12);
        for job in ["pilot", "logger", "sculptor"] {
            for gender in ["female", "male"] {
                let n = people
                    .iter()
                    .filter(|p| p[0].1 == text(job) && p[1].1 == text(gender))
                    .count();
                assert_eq!(n, 2, "{job} {gender}");
            }
        }
        // Last factor varies fastest; copies of the panel come one after another.
        assert_eq!(
            people[1],
            vec![
                ("job".into(), text("pilot")),
                ("gender".into(), text("male"))
            ]
        );
        assert_eq!(people[6], people[0]);
    }

    #[test]
    fn same_seed_same_people() {
        let population = drawn(
            vec![
                ("age", Draw::UniformInt { min: 18, max: 64 }),
                (
                    "income",
                    Draw::Uniform {
                        min: 1.0,
                        max: 2.0,
                        decimals: Some(2),
                    },
                ),
            ],
            100,
        );
        assert_eq!(population.generate(42), population.generate(42));
        assert_ne!(population.generate(42), population.generate(43));
        // Adding an attribute leaves the others' draws alone.
        let mut more = population.clone();
        more.draws.insert(
            0,
            (
                "gender".into(),
                Draw::Fixed(AttributeValue::Text("x".into())),
            ),
        );
        assert_eq!(
            column(&more.generate(42), 1),
            column(&population.generate(42), 0)
        );
    }

    #[test]
    fn cells_keep_their_type() {
        assert_eq!(AttributeValue::from_cell("42"), AttributeValue::Int(42));
        assert_eq!(AttributeValue::from_cell("4.5"), AttributeValue::Float(4.5));
        assert_eq!(
            AttributeValue::from_cell("007"),
            AttributeValue::Text("007".into())
        );
        assert_eq!(
            AttributeValue::from_cell("nan"),
            AttributeValue::Text("nan".into())
        );
        assert_eq!(
            AttributeValue::from_cell(""),
            AttributeValue::Text(String::new())
        );
    }

    #[test]
    fn population_csv_round_trips() {
        let person = |id: usize, age: i64, persona: &str| Person {
            id,
            attributes: vec![
                ("age".into(), AttributeValue::Int(age)),
                ("job".into(), AttributeValue::Text("Oil, gas".into())),
            ],
            persona: persona.into(),
        };
        let mut out = Vec::new();
        write_population_csv(
            &[person(1, 35, "You are 35."), person(2, 62, "You are 62.")],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "respondent,age,job,persona\n1,35,\"Oil, gas\",You are 35.\n2,62,\"Oil, gas\",You are 62.\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        std::fs::write(&path, out).unwrap();
        let rows = read_csv(&path).unwrap();
        assert_eq!(rows[1], person(2, 62, "").attributes);
    }
}
