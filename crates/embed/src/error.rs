use std::fmt;

/// Everything that can go wrong between image bytes and an embedding.
///
/// The variants are coarse on purpose: the SQL glue maps each one to a SQLSTATE, and the
/// `Display` text is what the user sees in the error message.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedError {
    /// Zero bytes of input.
    Empty,
    /// The bytes are not in any image format we recognise.
    UnknownFormat,
    /// A recognised image that uses something we do not support (a format, a colour type, a
    /// codec feature).
    Unsupported { what: String },
    /// Truncated or malformed image data.
    Corrupt { detail: String },
    /// The image exceeds a decoder limit. `width`/`height` are 0 when the decoder refused the
    /// file before its dimensions were known.
    TooLarge {
        width: u32,
        height: u32,
        limit: String,
    },
    /// The model manifest is unreadable, inconsistent, or does not match the model.
    Manifest { detail: String },
    /// ONNX Runtime failed (loading the library or the model, or running it).
    Runtime { detail: String },
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::Empty => f.write_str("image data is empty"),
            EmbedError::UnknownFormat => f.write_str(
                "image format not recognised (expected JPEG, PNG, WebP, GIF, BMP or TIFF)",
            ),
            EmbedError::Unsupported { what } => write!(f, "unsupported image: {what}"),
            EmbedError::Corrupt { detail } => write!(f, "corrupt image data: {detail}"),
            EmbedError::TooLarge {
                width: 0,
                height: 0,
                limit,
            } => {
                write!(f, "image too large: exceeds {limit}")
            }
            EmbedError::TooLarge {
                width,
                height,
                limit,
            } => {
                write!(f, "image too large: {width}x{height} exceeds {limit}")
            }
            EmbedError::Manifest { detail } => write!(f, "invalid model manifest: {detail}"),
            EmbedError::Runtime { detail } => write!(f, "ONNX Runtime error: {detail}"),
        }
    }
}

impl std::error::Error for EmbedError {}

impl EmbedError {
    pub(crate) fn manifest(detail: impl Into<String>) -> Self {
        EmbedError::Manifest {
            detail: detail.into(),
        }
    }

    pub(crate) fn runtime(detail: impl fmt::Display) -> Self {
        EmbedError::Runtime {
            detail: detail.to_string(),
        }
    }
}
