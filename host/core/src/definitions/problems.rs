//! What a refused definitions file reports: every problem, with its path and line.

use std::fmt;

use serde::Serialize;

use super::ModuleRef;
use crate::Signature;

/// One problem in a definitions file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where on its line: `column 3` for a syntax error, or a path such as
    /// `feature_views[0] "user_stats" .source`.
    pub at: String,
    /// The line of the file it is on (1-based), when known. Problems found by
    /// [`Definitions::validate_yaml`] and syntax errors have one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// The YAML path `at` names: `feature_views[0] "v" .inputs[2] `x`` is
    /// `feature_views[0].inputs[2]`.
    pub(super) fn yaml_path(&self) -> String {
        let (head, rest) = self.at.split_once(' ').unwrap_or((&self.at, ""));
        match rest.rfind("\" .") {
            Some(i) => {
                let field = rest[i + 3..].split(' ').next().unwrap_or_default();
                format!("{head}.{field}")
            }
            None => head.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}, {}: {}", self.at, self.message),
            None => write!(f, "{}: {}", self.at, self.message),
        }
    }
}

/// Definitions that cannot be applied: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid definitions ({} problem{}):\n{}", .problems.len(),
    if .problems.len() == 1 { "" } else { "s" },
    .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct DefinitionErrors {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

/// What validation needs to know about uploaded modules.
pub trait ModuleCatalog {
    /// The declared signature of a module version, if it was uploaded.
    fn signature(&self, module: &ModuleRef) -> Option<Signature>;
}

impl<F: Fn(&ModuleRef) -> Option<Signature>> ModuleCatalog for F {
    fn signature(&self, module: &ModuleRef) -> Option<Signature> {
        self(module)
    }
}
