//! Module references (`name@version`) and transform input references (`scope:name`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A module version: `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleRef {
    /// The module name.
    pub name: String,
    /// The exact version.
    pub version: String,
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl std::str::FromStr for ModuleRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, version) = text
            .split_once('@')
            .ok_or_else(|| format!("module `{text}` must be `name@version`"))?;
        check_module_name(name)?;
        check_version(version)?;
        Ok(ModuleRef {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }
}

/// Checks a module name: an identifier-like name of letters, digits, `_` and `-`.
pub fn check_module_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "module name `{name}` must start with a letter and hold only letters, digits, `_` and `-` (at most 128)"
        ))
    }
}

/// Checks a version: letters, digits, `.`, `_`, `-` and `+`, such as `1.0.0` or `2024-06-01`.
pub fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "version `{version}` must start with a letter or digit and hold only letters, digits, `.`, `_`, `-` and `+` (at most 64)"
        ))
    }
}

impl Serialize for ModuleRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a transform input comes from: `scope:name`, written as that string, or as
/// `{from: scope:name, as: input}` when the module calls the input otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputRef {
    /// A feature view, a transform, or `request`.
    pub scope: String,
    /// The feature, output or request field.
    pub name: String,
    /// The input's name in the module's signature, when it is not `name`.
    pub alias: Option<String>,
}

impl InputRef {
    /// The input's name in the module's signature.
    pub fn input_name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scope, self.name)?;
        if let Some(alias) = &self.alias {
            write!(f, " as {alias}")?;
        }
        Ok(())
    }
}

impl Serialize for InputRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.alias {
            None => serializer.collect_str(&format_args!("{}:{}", self.scope, self.name)),
            Some(alias) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("from", &format!("{}:{}", self.scope, self.name))?;
                map.serialize_entry("as", alias)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for InputRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Renamed {
            from: String,
            #[serde(rename = "as")]
            alias: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Renamed(Renamed),
        }
        let (text, alias) = match Raw::deserialize(deserializer)? {
            Raw::Plain(text) => (text, None),
            Raw::Renamed(Renamed { from, alias }) => (from, Some(alias)),
        };
        match text.split_once(':') {
            Some((scope, name)) if !scope.is_empty() && !name.is_empty() => Ok(InputRef {
                scope: scope.to_owned(),
                name: name.to_owned(),
                alias,
            }),
            _ => Err(serde::de::Error::custom(format!(
                "input `{text}` must be `view:feature`, `transform:output` or `request:field`"
            ))),
        }
    }
}
