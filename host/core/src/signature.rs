use std::collections::HashSet;
use std::fmt;

use arrow_schema::{Field, Schema};

use crate::{DType, Error, Result};

/// The longest column name a signature may declare, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// The most columns a signature may declare on either side.
pub const MAX_COLUMNS: usize = 1024;

/// One declared column: a name, a dtype, and whether it may hold nulls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ColumnSpec {
    /// The column name: an identifier (`[A-Za-z_][A-Za-z0-9_]*`).
    pub name: String,
    /// The column's dtype.
    pub dtype: DType,
    /// Whether the column may hold nulls.
    pub nullable: bool,
}

impl ColumnSpec {
    /// A nullable column.
    pub fn new(name: impl Into<String>, dtype: DType) -> Self {
        Self {
            name: name.into(),
            dtype,
            nullable: true,
        }
    }

    /// The Arrow field for this column.
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.dtype.arrow_type(), self.nullable)
    }
}

impl fmt::Display for ColumnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let null = if self.nullable { "" } else { " not null" };
        write!(f, "{}: {}{}", self.name, self.dtype, null)
    }
}

/// What a transform reads and what it produces, as the transform itself declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    /// The input columns, in the order the transform receives them.
    pub inputs: Vec<ColumnSpec>,
    /// The output columns, in the order the transform returns them.
    pub outputs: Vec<ColumnSpec>,
}

impl Signature {
    /// Checks the rules every signature obeys: at least one output; at most
    /// [`MAX_COLUMNS`] columns a side; identifier names of at most [`MAX_NAME_LEN`] bytes;
    /// no name twice on the same side. The error names the offending column.
    pub fn validate(&self) -> Result<()> {
        if self.outputs.is_empty() {
            return Err(Error::InvalidSignature(
                "declares no output column".to_owned(),
            ));
        }
        for (side, columns) in [("input", &self.inputs), ("output", &self.outputs)] {
            if columns.len() > MAX_COLUMNS {
                return Err(Error::InvalidSignature(format!(
                    "declares {} {side} columns; the limit is {MAX_COLUMNS}",
                    columns.len()
                )));
            }
            let mut seen = HashSet::with_capacity(columns.len());
            for column in columns {
                check_name(side, &column.name)?;
                if !seen.insert(column.name.as_str()) {
                    return Err(Error::InvalidSignature(format!(
                        "{side} column `{}` is declared twice",
                        column.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The Arrow schema of the batch a transform receives.
    pub fn input_schema(&self) -> Schema {
        Schema::new(
            self.inputs
                .iter()
                .map(ColumnSpec::arrow_field)
                .collect::<Vec<_>>(),
        )
    }

    /// The Arrow schema of the batch a transform returns.
    pub fn output_schema(&self) -> Schema {
        Schema::new(
            self.outputs
                .iter()
                .map(ColumnSpec::arrow_field)
                .collect::<Vec<_>>(),
        )
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |columns: &[ColumnSpec]| {
            columns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "({}) -> ({})", list(&self.inputs), list(&self.outputs))
    }
}

/// Whether `name` is an identifier (`[A-Za-z_][A-Za-z0-9_]*`) of at most
/// [`MAX_NAME_LEN`] bytes: the rule for every column and definition name.
pub fn is_identifier(name: &str) -> bool {
    well_formed(name) && name.len() <= MAX_NAME_LEN
}

fn well_formed(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_name(side: &str, name: &str) -> Result<()> {
    if !well_formed(name) {
        return Err(Error::InvalidSignature(format!(
            "{side} column name {name:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidSignature(format!(
            "{side} column name `{name}` is longer than {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(inputs: &[&str], outputs: &[&str]) -> Signature {
        let specs = |names: &[&str]| {
            names
                .iter()
                .map(|n| ColumnSpec::new(*n, DType::Float64))
                .collect()
        };
        Signature {
            inputs: specs(inputs),
            outputs: specs(outputs),
        }
    }

    #[test]
    fn valid_signature_passes_and_displays() {
        let s = sig(&["amount", "avg_7d"], &["ratio"]);
        s.validate().unwrap();
        assert_eq!(
            s.to_string(),
            "(amount: float64, avg_7d: float64) -> (ratio: float64)"
        );
        assert_eq!(s.input_schema().fields().len(), 2);
    }

    #[test]
    fn each_rule_names_the_column() {
        let cases = [
            (sig(&["a"], &[]), "declares no output column"),
            (
                sig(&["a", "a"], &["b"]),
                "input column `a` is declared twice",
            ),
            (sig(&[], &["b", "b"]), "output column `b` is declared twice"),
            (
                sig(&["1a"], &["b"]),
                "input column name \"1a\" is not an identifier",
            ),
            (
                sig(&[], &["b c"]),
                "output column name \"b c\" is not an identifier",
            ),
            (
                sig(&[""], &["b"]),
                "input column name \"\" is not an identifier",
            ),
        ];
        for (s, want) in cases {
            let got = s.validate().unwrap_err().to_string();
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let got = sig(&[], &[&long]).validate().unwrap_err().to_string();
        assert!(got.contains("longer than 128 bytes"), "{got}");
    }

    #[test]
    fn serde_uses_definition_names() {
        let spec = ColumnSpec::new("emb", DType::Float32List);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"name":"emb","dtype":"float32_list","nullable":true}"#
        );
    }
}
