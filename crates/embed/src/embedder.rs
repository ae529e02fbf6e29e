//! Runs the model with ONNX Runtime and turns its outputs into a descriptor.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::decode::{decode_for_size, DecodeLimits};
use crate::manifest::Manifest;
use crate::preprocess::{normalise_into, resize_and_crop};
use crate::EmbedError;

/// Time spent in each stage of one [`Embedder::embed_timed`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub decode: Duration,
    /// Resize, orientation, crop and normalisation.
    pub resize: Duration,
    pub inference: Duration,
}

/// A loaded model, ready to embed images. Methods take `&self` (the ONNX Runtime session is
/// behind a mutex), so one `Embedder` can be shared by threads; calls then run one at a time.
pub struct Embedder {
    session: Mutex<Session>,
    manifest: Manifest,
    pub(crate) limits: DecodeLimits,
}

/// ONNX Runtime allows one environment per process, and it must outlive every session, so
/// it is created on first use and kept, together with the library it was loaded from.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn environment(lib: &Path) -> Result<Environment, EmbedError> {
    let lib = lib
        .canonicalize()
        .map_err(|e| EmbedError::runtime(format!("ONNX Runtime library {}: {e}", lib.display())))?;
    let mut current = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((loaded, env)) = current.as_ref() {
        if *loaded != lib {
            return Err(EmbedError::runtime(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot switch to {}",
                loaded.display(),
                lib.display()
            )));
        }
        return Ok(env.clone());
    }
    let env = ort::init_from(&lib)
        .map_err(EmbedError::runtime)?
        .with_name("imgsim")
        .with_telemetry(false)
        .build()
        .map_err(EmbedError::runtime)?;
    *current = Some((lib, env.clone()));
    Ok(env)
}

/// Shape of a float tensor outlet, or a manifest error naming `what`.
fn float_shape<'a>(ty: &'a ValueType, what: &str) -> Result<&'a [i64], EmbedError> {
    match ty {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } => Ok(shape),
        other => Err(EmbedError::manifest(format!(
            "{what} is {other}, expected a float32 tensor"
        ))),
    }
}

impl Embedder {
    /// Loads ONNX Runtime from `onnxruntime_lib` (once per process) and the manifest's model,
    /// and checks that the model has the inputs and outputs the manifest names, and that the
    /// descriptor has `required_dims` dimensions. `intra_threads` is ONNX Runtime's
    /// intra-operator thread count (at least 1).
    pub fn new(
        manifest: &Manifest,
        onnxruntime_lib: &Path,
        intra_threads: usize,
        required_dims: usize,
    ) -> Result<Embedder, EmbedError> {
        if manifest.descriptor.dims != required_dims {
            return Err(EmbedError::manifest(format!(
                "descriptor.dims is {} but {required_dims} are required",
                manifest.descriptor.dims
            )));
        }
        let model = manifest.model_path();
        if !model.is_file() {
            return Err(EmbedError::manifest(format!(
                "model file {} not found",
                model.display()
            )));
        }
        let env = environment(onnxruntime_lib)?;
        let session = Session::builder(&env)
            .map_err(EmbedError::runtime)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(EmbedError::runtime)?
            .with_intra_threads(intra_threads.max(1))
            .map_err(EmbedError::runtime)?
            .with_inter_threads(1)
            .map_err(EmbedError::runtime)?
            // Idle worker threads must not spin: they would burn CPU inside the database.
            .with_config_entry("session.intra_op.allow_spinning", "0")
            .map_err(EmbedError::runtime)?
            .commit_from_file(&model)
            .map_err(|e| EmbedError::runtime(format!("loading {}: {e}", model.display())))?;
        check_model(&session, manifest)?;
        Ok(Embedder {
            session: Mutex::new(session),
            manifest: manifest.clone(),
            limits: DecodeLimits::default(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dims(&self) -> usize {
        self.manifest.descriptor.dims
    }

    /// The unit-length descriptor of one encoded image.
    pub fn embed(&self, bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
        self.embed_timed(bytes).map(|(descriptor, _)| descriptor)
    }

    /// [`embed`](Self::embed), also returning the time spent in each stage.
    pub fn embed_timed(&self, bytes: &[u8]) -> Result<(Vec<f32>, Timings), EmbedError> {
        let mut timings = Timings::default();
        let mut input = vec![0.0; self.input_len()];
        self.prepare(bytes, &mut input, &mut timings)?;
        let rows = self.infer(&input, &self.descriptor_outputs(), &mut timings)?;
        Ok((self.descriptor(&rows)?, timings))
    }

    /// Descriptors of several images; a bad image only fails its own entry.
    ///
    /// Images run one at a time: batching them through ONNX Runtime gave no measurable
    /// throughput gain on CPU (see the crate's bench, `examples/bench_embed.rs`), only more
    /// memory.
    pub fn embed_batch(&self, images: &[&[u8]]) -> Vec<Result<Vec<f32>, EmbedError>> {
        images.iter().map(|bytes| self.embed(bytes)).collect()
    }

    /// The model's class logits for one image (needs a `classifier` in the manifest).
    pub fn classify(&self, bytes: &[u8]) -> Result<Vec<f32>, EmbedError> {
        let classifier = self.manifest.classifier.as_ref().ok_or_else(|| {
            EmbedError::manifest(format!(
                "manifest {:?} has no classifier",
                self.manifest.name
            ))
        })?;
        let mut timings = Timings::default();
        let mut input = vec![0.0; self.input_len()];
        self.prepare(bytes, &mut input, &mut timings)?;
        let outputs = [(classifier.output.as_str(), classifier.classes)];
        let mut rows = self.infer(&input, &outputs, &mut timings)?;
        Ok(rows.remove(0))
    }

    pub(crate) fn input_len(&self) -> usize {
        3 * self.manifest.input.width as usize * self.manifest.input.height as usize
    }

    pub(crate) fn descriptor_outputs(&self) -> Vec<(&str, usize)> {
        self.manifest
            .descriptor
            .parts
            .iter()
            .map(|p| (p.output.as_str(), p.dims))
            .collect()
    }

    /// Decodes and pre-processes one image into the model input.
    fn prepare(
        &self,
        bytes: &[u8],
        input: &mut [f32],
        timings: &mut Timings,
    ) -> Result<(), EmbedError> {
        let pre = &self.manifest.preprocess;
        let start = Instant::now();
        let image = decode_for_size(
            bytes,
            &self.limits,
            pre.alpha_background,
            pre.resize_shorter_to,
        )?;
        let decoded = Instant::now();
        timings.decode += decoded - start;
        let crop = resize_and_crop(&image, pre, &self.manifest.input)?;
        drop(image);
        normalise_into(&crop, pre, input);
        timings.resize += decoded.elapsed();
        Ok(())
    }

    /// Runs one image and returns the values of each requested `(output, dims)`.
    pub(crate) fn infer(
        &self,
        input: &[f32],
        outputs: &[(&str, usize)],
        timings: &mut Timings,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let start = Instant::now();
        let (w, h) = (
            self.manifest.input.width as usize,
            self.manifest.input.height as usize,
        );
        let tensor =
            TensorRef::from_array_view(([1, 3, h, w], input)).map_err(EmbedError::runtime)?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let results = session
            .run(ort::inputs![self.manifest.input.name.as_str() => tensor])
            .map_err(EmbedError::runtime)?;
        let rows = outputs
            .iter()
            .map(|&(name, dims)| {
                let value = results.get(name).ok_or_else(|| {
                    EmbedError::runtime(format!("model returned no output {name:?}"))
                })?;
                let (shape, data) = value
                    .try_extract_tensor::<f32>()
                    .map_err(EmbedError::runtime)?;
                if data.len() != dims {
                    return Err(EmbedError::runtime(format!(
                        "output {name:?} has shape {shape:?}, expected {dims} values"
                    )));
                }
                if data.iter().any(|v| !v.is_finite()) {
                    return Err(EmbedError::runtime(format!(
                        "output {name:?} is not finite"
                    )));
                }
                Ok(data.to_vec())
            })
            .collect();
        timings.inference += start.elapsed();
        rows
    }

    /// Each part's output L2-normalised and weighted, concatenated, L2-normalised.
    pub(crate) fn descriptor(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, EmbedError> {
        let mut descriptor = Vec::with_capacity(self.dims());
        for (part, row) in self.manifest.descriptor.parts.iter().zip(rows) {
            let norm = l2(row);
            // An all-zero part (e.g. a ReLU stage on a blank image) contributes zeros.
            let scale = if norm > 0.0 { part.weight / norm } else { 0.0 };
            descriptor.extend(row.iter().map(|v| v * scale));
        }
        let norm = l2(&descriptor);
        if norm == 0.0 {
            return Err(EmbedError::runtime(
                "the model produced an all-zero descriptor",
            ));
        }
        descriptor.iter_mut().for_each(|v| *v /= norm);
        Ok(descriptor)
    }
}

fn l2(values: &[f32]) -> f32 {
    values.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// Checks the model's input and outputs against the manifest.
fn check_model(session: &Session, manifest: &Manifest) -> Result<(), EmbedError> {
    let names = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| o.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inputs = session.inputs();
    let want = &manifest.input;
    let [input] = inputs else {
        return Err(EmbedError::manifest(format!(
            "the model must have exactly one input, it has: {}",
            names(inputs)
        )));
    };
    if input.name() != want.name {
        return Err(EmbedError::manifest(format!(
            "input.name is {:?} but the model's input is {:?}",
            want.name,
            input.name()
        )));
    }
    let shape = float_shape(input.dtype(), &format!("model input {:?}", want.name))?;
    let expected = [1, 3, i64::from(want.height), i64::from(want.width)];
    let fits = shape.len() == 4 && shape.iter().zip(expected).all(|(&d, e)| d == -1 || d == e);
    if !fits {
        return Err(EmbedError::manifest(format!(
            "model input {:?} has shape {shape:?}, expected [N, 3, {}, {}]",
            want.name, want.height, want.width
        )));
    }

    let mut wanted: Vec<(&str, usize)> = manifest
        .descriptor
        .parts
        .iter()
        .map(|p| (p.output.as_str(), p.dims))
        .collect();
    if let Some(c) = &manifest.classifier {
        wanted.push((c.output.as_str(), c.classes));
    }
    for (name, dims) in wanted {
        let outlet = session
            .outputs()
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| {
                EmbedError::manifest(format!(
                    "the model has no output {name:?}; its outputs are: {}",
                    names(session.outputs())
                ))
            })?;
        let shape = float_shape(outlet.dtype(), &format!("model output {name:?}"))?;
        // [N, dims] or [N, dims, 1, 1]; symbolic sizes are checked on every run instead.
        let per_row = shape
            .iter()
            .skip(1)
            .try_fold(1i64, |acc, &d| (d >= 0).then_some(acc * d));
        if shape.is_empty() || per_row.is_some_and(|p| p != dims as i64) {
            return Err(EmbedError::manifest(format!(
                "model output {name:?} has shape {shape:?}, the manifest says {dims} values per image"
            )));
        }
    }
    Ok(())
}
