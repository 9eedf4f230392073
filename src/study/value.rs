//! Attribute values: what a person's attributes, a CSV cell or a `yes`/`no` answer hold, text
//! or a number. Their own module, so that the population and the draws that make values both
//! use them without importing each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One attribute value: text or a number, as written in the study file or CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl AttributeValue {
    /// Reads a CSV cell: a whole number if it prints back identically, else a
    /// decimal number, else text. Codes with leading zeros (`007`, zip codes) stay text.
    pub fn from_cell(cell: &str) -> Self {
        if let Ok(i) = cell.parse::<i64>() {
            if i.to_string() == cell {
                return AttributeValue::Int(i);
            }
        }
        let unsigned = cell.strip_prefix('-').unwrap_or(cell);
        let leading_zero =
            unsigned.len() > 1 && unsigned.starts_with('0') && !unsigned.starts_with("0.");
        let plain = unsigned.starts_with(|c: char| c.is_ascii_digit());
        if let (Ok(x), true, false) = (cell.parse::<f64>(), plain, leading_zero) {
            if x.is_finite() {
                return AttributeValue::Float(x);
            }
        }
        AttributeValue::Text(cell.to_string())
    }

    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttributeValue::Int(i) => Some(*i as f64),
            AttributeValue::Float(x) => Some(*x),
            AttributeValue::Text(_) => None,
        }
    }

    pub(crate) fn to_template_value(&self) -> minijinja::Value {
        match self {
            AttributeValue::Int(i) => minijinja::Value::from(*i),
            AttributeValue::Float(x) => minijinja::Value::from(*x),
            AttributeValue::Text(s) => minijinja::Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Int(i) => write!(f, "{i}"),
            AttributeValue::Float(x) => write!(f, "{x}"),
            AttributeValue::Text(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AttributeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AttributeValue, E> {
                i64::try_from(v)
                    .map(AttributeValue::Int)
                    .map_err(|_| E::custom(format!("integer `{v}` is too large")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<AttributeValue, E> {
                Ok(AttributeValue::Float(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
