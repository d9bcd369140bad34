/// The logical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// A boolean.
    Bool,
    /// A signed 64-bit integer.
    Int64,
    /// An IEEE 754 binary64 float.
    Float64,
    /// A UTF-8 string.
    String,
    /// An instant, as microseconds since the Unix epoch, UTC.
    Timestamp,
    /// A variable-length list of binary32 floats, such as an embedding.
    Float32List,
}

impl DType {
    /// The name definitions use for this dtype.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::Int64 => "int64",
            DType::Float64 => "float64",
            DType::String => "string",
            DType::Timestamp => "timestamp",
            DType::Float32List => "float32_list",
        }
    }
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) dtype: DType,
    pub(crate) nullable: bool,
}

/// A transform's declared inputs and outputs, built once in [`Transform::signature`].
///
/// [`Transform::signature`]: crate::Transform::signature
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    pub(crate) inputs: Vec<Spec>,
    pub(crate) outputs: Vec<Spec>,
}

impl Signature {
    /// An empty signature.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a nullable input column.
    pub fn input(self, name: &str, dtype: DType) -> Self {
        self.with(true, name, dtype, true)
    }

    /// Declares an input column that is never null: the host refuses a batch with a null
    /// in it before the transform runs.
    pub fn required_input(self, name: &str, dtype: DType) -> Self {
        self.with(true, name, dtype, false)
    }

    /// Declares a nullable output column.
    pub fn output(self, name: &str, dtype: DType) -> Self {
        self.with(false, name, dtype, true)
    }

    /// Declares an output column that the transform promises never to leave null.
    pub fn required_output(self, name: &str, dtype: DType) -> Self {
        self.with(false, name, dtype, false)
    }

    fn with(mut self, input: bool, name: &str, dtype: DType, nullable: bool) -> Self {
        let spec = Spec {
            name: name.to_owned(),
            dtype,
            nullable,
        };
        if input {
            self.inputs.push(spec);
        } else {
            self.outputs.push(spec);
        }
        self
    }

    /// The declared input columns as `(name, dtype, nullable)`.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, DType, bool)> {
        self.inputs
            .iter()
            .map(|s| (s.name.as_str(), s.dtype, s.nullable))
    }

    /// The declared output columns as `(name, dtype, nullable)`.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, DType, bool)> {
        self.outputs
            .iter()
            .map(|s| (s.name.as_str(), s.dtype, s.nullable))
    }
}
