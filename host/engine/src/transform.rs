use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use skewless_core::{ColumnSpec, DType, Signature};
use wasmtime::component::{ComponentExportIndex, Instance};
use wasmtime::{PoolConcurrencyLimitError, Store, Trap};

use crate::bindings::{FeatureTransform, FeatureTransformPre, wit};

/// The exported interface every transform implements.
const TRANSFORMER: &str = "skewless:transform/transformer@0.1.0";
use crate::convert::{self, ColumnError};
use crate::sandbox::CallState;
use crate::{Engine, Error, Result};

/// A loaded, validated, compiled transform: call it from any thread, any number of times.
///
/// Every call instantiates the component afresh in its own `Store` from one shared
/// `InstancePre`, runs it under the engine's [`Limits`](crate::Limits) and drops the
/// `Store`: no state carries from one call to the next, a trap poisons nothing but its own
/// call, and the same input always gives the same output bits.
#[derive(Clone)]
pub struct Transform {
    inner: Arc<TransformInner>,
}

struct TransformInner {
    engine: Engine,
    label: String,
    sha256: String,
    signature: Signature,
    output_schema: SchemaRef,
    pre: FeatureTransformPre<CallState>,
    /// `transformer.transform`, looked up once at load.
    transform_fn: ComponentExportIndex,
    from_cache: bool,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("label", &self.inner.label)
            .field("sha256", &self.inner.sha256)
            .field("signature", &self.inner.signature.to_string())
            .finish_non_exhaustive()
    }
}

impl Transform {
    pub(crate) fn new(
        engine: Engine,
        label: String,
        sha256: String,
        pre: FeatureTransformPre<CallState>,
        from_cache: bool,
    ) -> Result<Self> {
        let component = pre.instance_pre().component();
        let transform_fn = component
            .get_export_index(None, TRANSFORMER)
            .and_then(|iface| component.get_export_index(Some(&iface), "transform"))
            .ok_or_else(|| Error::WrongWorld {
                transform: label.clone(),
                reason: format!("no `transform` function in `{TRANSFORMER}`"),
            })?;
        let mut transform = TransformInner {
            engine,
            label,
            sha256,
            signature: Signature {
                inputs: vec![],
                outputs: vec![],
            },
            output_schema: Arc::new(arrow_schema::Schema::empty()),
            pre,
            transform_fn,
            from_cache,
        };
        // wasmtime checks export types when typed functions are looked up: do it for both
        // functions now, so that a component of another contract fails here, at load.
        let declared = transform
            .invoke(|store, instance| {
                let typed = FeatureTransform::new(&mut *store, instance).and_then(|guest| {
                    typed_transform(store, instance, &transform_fn)?;
                    Ok(guest)
                });
                match typed {
                    Ok(guest) => guest
                        .skewless_transform_transformer()
                        .call_describe(store)
                        .map(Ok),
                    Err(mismatch) => Ok(Err(format!("{mismatch:#}"))),
                }
            })?
            .map_err(|reason| Error::WrongWorld {
                transform: transform.label.clone(),
                reason,
            })?;
        let signature = Signature {
            inputs: declared.inputs.into_iter().map(column_spec).collect(),
            outputs: declared.outputs.into_iter().map(column_spec).collect(),
        };
        signature
            .validate()
            .map_err(|source| Error::InvalidSignature {
                transform: transform.label.clone(),
                source,
            })?;
        transform.output_schema = Arc::new(signature.output_schema());
        transform.signature = signature;
        Ok(Self {
            inner: Arc::new(transform),
        })
    }

    /// The label errors and logs name this transform by.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The lowercase hex sha256 of the component bytes: the version's identity.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The signature the transform declared.
    pub fn signature(&self) -> &Signature {
        &self.inner.signature
    }

    /// The names of what the component imports, such as `wasi:io/streams@0.2.6`. Load
    /// refuses anything but WASI 0.2, and the sandbox gives those no access to the host.
    pub fn imports(&self) -> Vec<String> {
        let component = self.inner.pre.instance_pre().component();
        component
            .component_type()
            .imports(&self.inner.engine.inner.wasmtime)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Whether the compiled code came from the compile cache rather than a compilation.
    pub fn loaded_from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// The Arrow schema of every output batch.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.inner.output_schema
    }

    /// Runs the transform over one batch.
    ///
    /// The declared inputs are taken from `input` by name (other columns are ignored),
    /// checked and widened to their canonical types; the output is checked against the
    /// declared outputs and the input's row count before it is returned.
    pub fn call(&self, input: &RecordBatch) -> Result<RecordBatch> {
        let t = &self.inner;
        let rows = input.num_rows();
        if u32::try_from(rows).is_err() {
            return Err(Error::InvalidInput {
                transform: t.label.clone(),
                column: None,
                reason: format!("{rows} rows; one call takes at most {} rows", u32::MAX),
            });
        }
        let arrays = convert::conform_input(input, &t.signature.inputs)
            .map_err(|e| t.column_error(e, true))?;
        let staged = convert::stage(arrays);
        let batch = convert::batch_in(rows, &t.signature.inputs, &staged);
        let output = t.invoke(|store, instance| {
            let func = typed_transform(store, instance, &t.transform_fn)?;
            Ok(func.call(store, (&batch,))?.0)
        })?;
        drop(batch);
        drop(staged);
        let output = output.map_err(|e| t.guest_error(e))?;
        let bytes = convert::wit_batch_bytes(&output);
        let limit = t.engine.limits().max_output_bytes;
        if bytes > limit {
            return Err(Error::OutputTooLarge {
                transform: t.label.clone(),
                bytes,
                limit,
            });
        }
        convert::batch_from_wit(output, rows, &t.signature.outputs, &t.output_schema)
            .map_err(|e| t.column_error(e, false))
    }

    /// Instantiates the component in a fresh `Store` and drops it, calling nothing: the
    /// fixed cost every call pays. For benchmarks and health checks.
    pub fn instantiate(&self) -> Result<()> {
        self.inner.invoke(|_, _| Ok(()))
    }
}

/// The text of wasmtime's error when a guest hands the host more than its hostcall fuel
/// (the error type is private to wasmtime).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// The hostcall fuel for an output cap of `max_output_bytes`: twice the cap, and at least
/// wasmtime's default, so that an output up to the cap is always copied out whole and
/// then measured.
fn hostcall_fuel(max_output_bytes: usize) -> usize {
    max_output_bytes.saturating_mul(2).max(128 << 20)
}

impl TransformInner {
    /// Instantiates the component in a fresh, limited `Store` and runs `f` on it, mapping
    /// every failure to an error that says who is at fault.
    fn invoke<R>(
        &self,
        f: impl FnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let inner = &self.engine.inner;
        let limits = &inner.limits;
        let mut store = Store::new(&inner.wasmtime, CallState::new(limits.memory_bytes));
        store.limiter(|state| &mut state.limiter);
        let tick = inner.epoch_tick.as_nanos().max(1);
        let ticks = limits.deadline.as_nanos().div_ceil(tick) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        // What wasmtime lets a guest hand the host in one go (its own default is 128 MiB,
        // which fired before `max_output_bytes` could): room for the largest output the
        // limits allow, with its framing, so that the output cap decides.
        store.set_hostcall_fuel(hostcall_fuel(limits.max_output_bytes));

        let instance = self
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| self.call_error(&store, e, true))?;
        f(&mut store, &instance).map_err(|e| self.call_error(&store, e, false))
    }

    fn call_error(
        &self,
        store: &Store<CallState>,
        error: wasmtime::Error,
        instantiating: bool,
    ) -> Error {
        let transform = self.label.clone();
        let limits = self.engine.limits();
        if let Some(requested) = store.data().limiter.exceeded {
            return Error::MemoryLimit {
                transform,
                limit: limits.memory_bytes,
                requested,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return Error::Timeout {
                transform,
                deadline: limits.deadline,
            };
        }
        // The guest handed over more than the fuel allows: far more than the output cap.
        if format!("{error:#}").contains(HOSTCALL_FUEL_EXHAUSTED) {
            return Error::OutputTooLarge {
                transform,
                bytes: hostcall_fuel(limits.max_output_bytes),
                limit: limits.max_output_bytes,
            };
        }
        if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return Error::Capacity {
                transform,
                reason: format!("{error:#}"),
            };
        }
        let stage = if instantiating {
            "while instantiating: "
        } else {
            ""
        };
        Error::Trap {
            transform,
            message: format!("{stage}{error:#}"),
            stderr: store.data().stderr.text(),
        }
    }

    fn column_error(&self, e: ColumnError, input: bool) -> Error {
        let transform = self.label.clone();
        let ColumnError { column, reason } = e;
        if input {
            Error::InvalidInput {
                transform,
                column,
                reason,
            }
        } else {
            Error::InvalidOutput {
                transform,
                column,
                reason,
            }
        }
    }

    fn guest_error(&self, e: wit::TransformError) -> Error {
        let (kind, message) = match e {
            wit::TransformError::InvalidInput(m) => ("invalid-input", m),
            wit::TransformError::Computation(m) => ("computation", m),
            wit::TransformError::Other(m) => ("other", m),
        };
        Error::Guest {
            transform: self.label.clone(),
            kind,
            message,
        }
    }
}

/// The exported `transform`, typed with the borrowed input batch it is called with.
type TransformFn<'a> = wasmtime::component::TypedFunc<
    (&'a convert::BatchIn<'a>,),
    (Result<wit::Batch, wit::TransformError>,),
>;

fn typed_transform<'a>(
    store: &mut Store<CallState>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> wasmtime::Result<TransformFn<'a>> {
    instance.get_typed_func(store, index)
}

fn column_spec(spec: wit::ColumnSpec) -> ColumnSpec {
    let dtype = match spec.dtype {
        wit::Dtype::Boolean => DType::Bool,
        wit::Dtype::Int64 => DType::Int64,
        wit::Dtype::Float64 => DType::Float64,
        wit::Dtype::Utf8 => DType::String,
        wit::Dtype::Timestamp => DType::Timestamp,
        wit::Dtype::Float32List => DType::Float32List,
    };
    ColumnSpec {
        name: spec.name,
        dtype,
        nullable: spec.nullable,
    }
}
