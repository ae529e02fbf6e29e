//! The JSON manifest that describes a model: where its ONNX file is, how to pre-process an
//! image for it, and which outputs make up the descriptor.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::EmbedError;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// Path of the ONNX file, relative to the manifest's folder (see [`Manifest::model_path`]).
    pub model: PathBuf,
    pub input: Input,
    pub preprocess: Preprocess,
    pub descriptor: Descriptor,
    /// Optional class-logits output, used to check the model classifies as it should.
    #[serde(default)]
    pub classifier: Option<Classifier>,
    /// Folder the manifest was read from; not part of the JSON.
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Input {
    /// Name of the model's image input, shape `[N, 3, height, width]`.
    pub name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Preprocess {
    /// The image is resized (antialiased) so its shorter side has this many pixels ...
    pub resize_shorter_to: u32,
    /// ... then cropped to `input.width` x `input.height`.
    pub crop: Crop,
    /// Per-channel (R, G, B) normalisation of values in 0..1: `(v - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Colour (0-255 RGB) that transparent pixels are composited onto.
    pub alpha_background: [u8; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crop {
    Center,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    pub dims: usize,
    pub parts: Vec<Part>,
}

/// One model output that contributes to the descriptor: its row is L2-normalised, multiplied
/// by `weight` and appended.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    pub output: String,
    pub dims: usize,
    pub weight: f32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Classifier {
    pub output: String,
    pub classes: usize,
}

/// Largest model input side we accept; far above any ImageNet CNN, it only guards against a
/// typo turning into a huge tensor.
const MAX_INPUT_SIDE: u32 = 4096;

impl Manifest {
    /// Reads and checks a manifest file. The model itself is checked by
    /// [`Embedder::new`](crate::Embedder::new).
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, EmbedError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path)
            .map_err(|e| EmbedError::manifest(format!("cannot read {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&json, dir).map_err(|e| match e {
            EmbedError::Manifest { detail } => {
                EmbedError::manifest(format!("{}: {detail}", path.display()))
            }
            other => other,
        })
    }

    /// Parses and checks manifest JSON; `dir` is the folder `model` is relative to.
    pub fn parse(json: &str, dir: &Path) -> Result<Manifest, EmbedError> {
        let mut manifest: Manifest =
            serde_json::from_str(json).map_err(|e| EmbedError::manifest(e.to_string()))?;
        manifest.dir = dir.to_path_buf();
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.model)
    }

    fn validate(&self) -> Result<(), EmbedError> {
        let bad = |msg: String| Err(EmbedError::manifest(msg));
        let Input { width, height, .. } = self.input;
        if !(1..=MAX_INPUT_SIDE).contains(&width) || !(1..=MAX_INPUT_SIDE).contains(&height) {
            return bad(format!(
                "input size {width}x{height} must be between 1 and {MAX_INPUT_SIDE} per side"
            ));
        }
        let p = &self.preprocess;
        if p.resize_shorter_to < width.max(height) || p.resize_shorter_to > MAX_INPUT_SIDE {
            return bad(format!(
                "preprocess.resize_shorter_to = {} must be at least the crop size {width}x{height} \
                 and at most {MAX_INPUT_SIDE}",
                p.resize_shorter_to
            ));
        }
        if p.mean.iter().any(|m| !m.is_finite())
            || p.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return bad("preprocess.mean must be finite and preprocess.std finite and > 0".into());
        }

        let d = &self.descriptor;
        if d.parts.is_empty() {
            return bad("descriptor.parts is empty".into());
        }
        let mut seen = HashSet::new();
        for part in &d.parts {
            if part.dims == 0 || !(part.weight.is_finite() && part.weight > 0.0) {
                return bad(format!(
                    "descriptor part {:?} needs dims > 0 and a finite weight > 0",
                    part.output
                ));
            }
            if !seen.insert(part.output.as_str()) {
                return bad(format!("descriptor part {:?} is listed twice", part.output));
            }
        }
        let sum: usize = d.parts.iter().map(|p| p.dims).sum();
        if sum != d.dims {
            return bad(format!(
                "descriptor parts add up to {sum} dimensions but descriptor.dims is {}",
                d.dims
            ));
        }
        if let Some(c) = &self.classifier {
            if c.classes == 0 {
                return bad("classifier.classes must be > 0".into());
            }
        }
        Ok(())
    }
}
