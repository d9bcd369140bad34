//! What validation makes: a [`Project`], its ids and resolved inputs.

use std::collections::BTreeMap;

use super::{Definitions, Feature};
use crate::{DType, Signature};

/// A feature view of a validated project: its index in `definitions().feature_views`.
/// Only validation makes one, so it always names a view of its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewId(pub(super) usize);

impl ViewId {
    /// The index in `definitions().feature_views`.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A transform of a validated project: its index in `definitions().transforms` (and in
/// `signatures()`). Only validation makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransformId(pub(super) usize);

impl TransformId {
    /// The index in `definitions().transforms`.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Who owns a feature: a feature view or a transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A feature view.
    View(ViewId),
    /// A transform.
    Transform(TransformId),
}

/// Where one input of a transform comes from, as validation resolved it: the planner
/// takes these as they are and never looks a name up again.
#[derive(Debug, Clone, PartialEq)]
pub enum ResolvedInput {
    /// The time features are assembled as of (`request:request_time`).
    RequestTime,
    /// A declared request field (from the transform's `request_schema`).
    Request(Feature),
    /// Feature `feature` (an index into the view's features) of view `view`.
    View {
        /// The view.
        view: ViewId,
        /// The feature's index in the view's features.
        feature: usize,
    },
    /// Output `output` (an index into the module's signature outputs) of an earlier
    /// transform.
    Transform {
        /// The transform, before this one in dependency order.
        transform: TransformId,
        /// The output's index in its module's signature.
        output: usize,
    },
}

/// One feature as a service serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFeature {
    /// The view or transform.
    pub owner: Owner,
    /// The owner's name.
    pub owner_name: String,
    /// The feature (or output) name.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
    /// Its index in the owner: among the view's features, or among the outputs of the
    /// transform's module signature.
    pub column: usize,
}

impl ServedFeature {
    /// `owner:name`, the feature's name in responses and training sets.
    pub fn qualified(&self) -> String {
        format!("{}:{}", self.owner_name, self.name)
    }
}

/// Definitions that passed every check, with what the checks worked out. Only
/// [`Definitions::validate`] makes one, and its parts are read-only, so a project whose
/// names and indices disagree cannot be built: tampering with a validated project does
/// not compile.
///
/// ```compile_fail
/// fn tamper(project: &mut skewless_core::Project) {
///     project.definitions.feature_views[0].features[0].name = "another".into();
/// }
/// ```
///
/// ```compile_fail
/// fn forge(definitions: skewless_core::Definitions) -> skewless_core::Project {
///     skewless_core::Project {
///         definitions,
///         signatures: Vec::new(),
///         inputs: Vec::new(),
///         transform_order: Vec::new(),
///         services: Default::default(),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Project {
    pub(super) definitions: Definitions,
    pub(super) signatures: Vec<Signature>,
    pub(super) inputs: Vec<Vec<ResolvedInput>>,
    pub(super) transform_order: Vec<TransformId>,
    pub(super) services: BTreeMap<String, Vec<ServedFeature>>,
}

impl Project {
    /// The definitions as written.
    pub fn definitions(&self) -> &Definitions {
        &self.definitions
    }

    /// Each transform's module signature, by index in `definitions().transforms`.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Where each input of transform `t` comes from, aligned with its signature's inputs.
    pub fn inputs(&self, t: TransformId) -> &[ResolvedInput] {
        &self.inputs[t.0]
    }

    /// Every transform, in dependency order: each after those it reads.
    pub fn transform_order(&self) -> &[TransformId] {
        &self.transform_order
    }

    /// The transform called `name`.
    pub fn transform_id(&self, name: &str) -> Option<TransformId> {
        self.definitions.transform_index(name).map(TransformId)
    }

    /// The feature view called `name`.
    pub fn view_id(&self, name: &str) -> Option<ViewId> {
        self.definitions.view_index(name).map(ViewId)
    }

    /// Each service's features, expanded (`view:*`), in output order, by service name.
    pub fn services(&self) -> &BTreeMap<String, Vec<ServedFeature>> {
        &self.services
    }
}
