//! Distributions for drawn attributes (`[population.draw]`), and how the study file
//! writes them: a value (fixed), a list (equally likely choice), or a table with `dist`.
//!
//! The table is read by hand from a `toml::Value` rather than through a serde enum, so
//! that each mistake gets its own message (`sd` must be positive) instead of serde's
//! "data did not match any variant".

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::value::AttributeValue;

/// A distribution an attribute is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub enum Draw {
    Fixed(AttributeValue),
    /// Whole numbers `min..=max`, equally likely.
    UniformInt {
        min: i64,
        max: i64,
    },
    /// Real numbers in `[min, max)`, rounded to `decimals` if given.
    Uniform {
        min: f64,
        max: f64,
        decimals: Option<u32>,
    },
    /// Normal, redrawn until inside `[min, max]` (a truncated normal), then rounded.
    Normal {
        mean: f64,
        sd: f64,
        min: f64,
        max: f64,
        decimals: Option<u32>,
    },
    /// One of `values`, with probabilities proportional to `weights`.
    Choice {
        values: Vec<AttributeValue>,
        weights: Vec<f64>,
    },
}

impl Draw {
    pub(crate) fn sample(&self, rng: &mut ChaCha8Rng) -> AttributeValue {
        match self {
            Draw::Fixed(v) => v.clone(),
            Draw::UniformInt { min, max } => AttributeValue::Int(rng.random_range(*min..=*max)),
            Draw::Uniform { min, max, decimals } => {
                rounded(min + (max - min) * rng.random::<f64>(), *decimals)
            }
            Draw::Normal {
                mean,
                sd,
                min,
                max,
                decimals,
            } => {
                // Rejection keeps the shape of the truncated normal; the cap guards
                // against bounds far in the tail, where clamping is the honest fallback.
                let mut x = mean + sd * standard_normal(rng);
                for _ in 0..10_000 {
                    let r = round_to(x, *decimals);
                    if r >= *min && r <= *max {
                        break;
                    }
                    x = mean + sd * standard_normal(rng);
                }
                rounded(x.clamp(*min, *max), *decimals)
            }
            Draw::Choice { values, weights } => {
                let total: f64 = weights.iter().sum();
                let mut u = rng.random::<f64>() * total;
                for (value, w) in values.iter().zip(weights) {
                    if u < *w {
                        return value.clone();
                    }
                    u -= w;
                }
                // Only reachable through rounding at the top end.
                let last = weights.iter().rposition(|w| *w > 0.0).unwrap_or(0);
                values[last].clone()
            }
        }
    }
}

/// Box-Muller: one standard normal draw from two uniforms.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1], so ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round_to(x: f64, decimals: Option<u32>) -> f64 {
    match decimals {
        Some(d) => {
            let scale = 10f64.powi(d as i32);
            (x * scale).round() / scale
        }
        None => x,
    }
}

fn rounded(x: f64, decimals: Option<u32>) -> AttributeValue {
    match decimals {
        Some(0) => AttributeValue::Int(x.round() as i64),
        d => AttributeValue::Float(round_to(x, d)),
    }
}

/// Interprets one `[population.draw]` entry. Errors are `(message, hint)` for the
/// caller to place at the entry's span.
pub(crate) fn parse_draw(value: &toml::Value) -> Result<Draw, (String, Option<String>)> {
    use toml::Value;
    let scalar = |v: &Value| -> Option<AttributeValue> {
        match v {
            Value::String(s) => Some(AttributeValue::Text(s.clone())),
            Value::Integer(i) => Some(AttributeValue::Int(*i)),
            Value::Float(x) => Some(AttributeValue::Float(*x)),
            _ => None,
        }
    };
    match value {
        Value::Array(items) => choice(items, None, &scalar),
        Value::Table(table) => {
            let Some(dist) = table.get("dist") else {
                return Err((
                    "a drawn attribute table needs `dist`".into(),
                    Some("e.g. { dist = \"uniform_int\", min = 18, max = 64 }".into()),
                ));
            };
            let name = dist
                .as_str()
                .map_or_else(|| dist.to_string(), str::to_string);
            let allowed: &[&str] = match dist.as_str() {
                Some("uniform_int") => &["dist", "min", "max"],
                Some("uniform") => &["dist", "min", "max", "decimals"],
                Some("normal") => &["dist", "mean", "sd", "min", "max", "decimals"],
                Some("choice") => &["dist", "values", "weights"],
                _ => {
                    return Err((
                        format!("unknown `dist` `{name}`"),
                        Some("use `uniform_int`, `uniform`, `normal` or `choice`".into()),
                    ))
                }
            };
            if let Some(key) = table.keys().find(|k| !allowed.contains(&k.as_str())) {
                let list = allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err((
                    format!("unknown field `{key}` for dist `{name}`, expected one of {list}"),
                    None,
                ));
            }
            let number = |key: &str| -> Result<Option<f64>, (String, Option<String>)> {
                match table.get(key) {
                    None => Ok(None),
                    Some(Value::Integer(i)) => Ok(Some(*i as f64)),
                    Some(Value::Float(x)) if x.is_finite() => Ok(Some(*x)),
                    Some(other) => Err((format!("`{key}` must be a number, got `{other}`"), None)),
                }
            };
            let required = |key: &str| -> Result<f64, (String, Option<String>)> {
                number(key)?.ok_or_else(|| (format!("dist `{name}` needs `{key}`"), None))
            };
            let decimals = match table.get("decimals") {
                None => None,
                Some(Value::Integer(d)) if (0..=12).contains(d) => Some(*d as u32),
                Some(other) => {
                    return Err((
                        format!("`decimals` must be a whole number from 0 to 12, got `{other}`"),
                        None,
                    ))
                }
            };
            match dist.as_str() {
                Some("uniform_int") => {
                    let int = |key: &str| match table.get(key) {
                        Some(Value::Integer(i)) => Ok(*i),
                        Some(other) => Err((
                            format!("`{key}` must be a whole number, got `{other}`"),
                            None,
                        )),
                        None => Err((format!("dist `uniform_int` needs `{key}`"), None)),
                    };
                    let (min, max) = (int("min")?, int("max")?);
                    if min > max {
                        return Err((
                            format!("`min` ({min}) is larger than `max` ({max})"),
                            Some("both ends are included: min = 18, max = 64 draws 18..64".into()),
                        ));
                    }
                    Ok(Draw::UniformInt { min, max })
                }
                Some("uniform") => {
                    let (min, max) = (required("min")?, required("max")?);
                    if min >= max {
                        return Err((
                            format!("`min` ({min}) must be smaller than `max` ({max})"),
                            None,
                        ));
                    }
                    Ok(Draw::Uniform { min, max, decimals })
                }
                Some("normal") => {
                    let (mean, sd) = (required("mean")?, required("sd")?);
                    if sd <= 0.0 {
                        return Err((format!("`sd` must be positive, got `{sd}`"), None));
                    }
                    let min = number("min")?.unwrap_or(f64::NEG_INFINITY);
                    let max = number("max")?.unwrap_or(f64::INFINITY);
                    if min >= max {
                        return Err((
                            format!("`min` ({min}) must be smaller than `max` ({max})"),
                            None,
                        ));
                    }
                    Ok(Draw::Normal {
                        mean,
                        sd,
                        min,
                        max,
                        decimals,
                    })
                }
                _ => {
                    let Some(Value::Array(values)) = table.get("values") else {
                        return Err((
                            "dist `choice` needs `values`, a list".into(),
                            Some(
                                "e.g. { dist = \"choice\", values = [\"female\", \"male\"] }"
                                    .into(),
                            ),
                        ));
                    };
                    choice(values, table.get("weights"), &scalar)
                }
            }
        }
        other => scalar(other).map(Draw::Fixed).ok_or_else(|| {
            (
                format!("cannot draw from `{other}`"),
                Some("write a value, a list to choose from, or a table with `dist`".into()),
            )
        }),
    }
}

fn choice(
    items: &[toml::Value],
    weights: Option<&toml::Value>,
    scalar: &dyn Fn(&toml::Value) -> Option<AttributeValue>,
) -> Result<Draw, (String, Option<String>)> {
    if items.is_empty() {
        return Err(("the list of values is empty".into(), None));
    }
    let values = items
        .iter()
        .map(|v| {
            scalar(v).ok_or_else(|| {
                (
                    format!("a choice value must be a string or a number, got `{v}`"),
                    None,
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let weights = match weights {
        None => vec![1.0; values.len()],
        Some(toml::Value::Array(ws)) => {
            let ws = ws
                .iter()
                .map(|w| match w {
                    toml::Value::Integer(i) if *i >= 0 => Ok(*i as f64),
                    toml::Value::Float(x) if *x >= 0.0 && x.is_finite() => Ok(*x),
                    other => Err((
                        format!("weights must be numbers of at least 0, got `{other}`"),
                        None,
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ws.len() != values.len() {
                return Err((
                    format!("{} weights for {} values", ws.len(), values.len()),
                    Some("give one weight per value".into()),
                ));
            }
            if ws.iter().sum::<f64>() <= 0.0 {
                return Err(("the weights add up to 0".into(), None));
            }
            ws
        }
        Some(other) => {
            return Err((
                format!("`weights` must be a list of numbers, got `{other}`"),
                None,
            ))
        }
    };
    Ok(Draw::Choice { values, weights })
}
