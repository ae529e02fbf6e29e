//! `image_embedding(bytea) → vector2048`: decode, pre-process and run the
//! model inside the backend (the pure pipeline is the `imgsim-embed` crate).
//!
//! The ONNX Runtime session is created lazily on first use in each backend
//! (never in the postmaster, so nothing is shared across fork) and reused
//! until `imgsim.model` or `imgsim.threads` changes.
//!
//! The descriptors of the last few inputs are kept until the end of the
//! transaction: under a generic plan `image_embedding($1)` is evaluated once
//! per row returned, and must not run the model each time.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::path::PathBuf;

use half::f16;
use imgsim_embed::{EmbedError, Embedder, Manifest, RecentInputs};
use pgrx::callbacks::{register_xact_callback, PgXactCallbackEvent};
use pgrx::prelude::*;
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting, PgSqlErrorCode};

use crate::error::UserError;
use crate::vector::{Vector2048, DIMS};

static MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// Register the `imgsim.*` GUCs; called once from `_PG_init`.
pub fn init() {
    GucRegistry::define_string_guc(
        c"imgsim.model",
        c"Manifest (JSON) of the model image_embedding runs.",
        c"Empty means the bundled EfficientNet-Lite0 in SHAREDIR/imgsim. Embeddings belong to \
          their model: after changing it, re-embed every stored image.",
        &MODEL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"imgsim.threads",
        c"ONNX Runtime intra-op threads per backend for image_embedding.",
        c"",
        &THREADS,
        1,
        64,
        GucContext::Userset,
        GucFlags::default(),
    );
}

fn share_dir() -> PathBuf {
    let mut buf = [0 as std::ffi::c_char; pg_sys::MAXPGPATH as usize];
    // SAFETY: my_exec_path is set at backend start; buf has MAXPGPATH bytes.
    unsafe {
        pg_sys::get_share_path(
            std::ptr::addr_of!(pg_sys::my_exec_path).cast(),
            buf.as_mut_ptr(),
        );
        PathBuf::from(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned())
    }
}

fn pkglib_dir() -> PathBuf {
    // SAFETY: pkglib_path is a NUL-terminated path set at backend start.
    unsafe {
        PathBuf::from(
            CStr::from_ptr(std::ptr::addr_of!(pg_sys::pkglib_path).cast())
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Where the set-up installs the bundled model and ONNX Runtime.
fn default_manifest() -> PathBuf {
    share_dir().join("imgsim").join("efficientnet-lite0.json")
}

fn onnxruntime_library() -> PathBuf {
    pkglib_dir().join("imgsim").join("libonnxruntime.so")
}

/// Distinct inputs whose descriptors are kept (a statement rarely embeds more
/// than one or two images per row) ...
const RECENT_INPUTS: usize = 4;
/// ... and the most bytes of input kept for them; a larger image is not kept.
const RECENT_BYTES: usize = 16 << 20;

struct Loaded {
    manifest_path: PathBuf,
    threads: usize,
    embedder: Embedder,
    recent: Recent,
}

/// Descriptors of the latest inputs, valid for this model within one transaction.
struct Recent {
    transaction: pg_sys::LocalTransactionId,
    inputs: RecentInputs<Vector2048>,
}

thread_local! {
    static EMBEDDER: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    /// Images this backend has run through the model (not answered from `Recent`).
    static MODEL_RUNS: Cell<i64> = const { Cell::new(0) };
}

fn local_transaction_id() -> pg_sys::LocalTransactionId {
    // SAFETY: MyProc is this backend's PGPROC, set up before any SQL function runs.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// Frees the kept inputs at the end of the transaction, so an idle backend holds none.
fn forget_recent_inputs() {
    EMBEDDER.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            if let Some(loaded) = slot.as_mut() {
                loaded.recent.inputs.clear();
            }
        }
    });
}

impl Recent {
    fn new() -> Recent {
        Recent {
            transaction: pg_sys::InvalidLocalTransactionId,
            inputs: RecentInputs::new(RECENT_INPUTS, RECENT_BYTES),
        }
    }

    /// The kept inputs, emptied first if they were kept in an earlier transaction.
    fn current(&mut self) -> &mut RecentInputs<Vector2048> {
        let transaction = local_transaction_id();
        if self.transaction != transaction {
            self.inputs.clear();
            self.transaction = transaction;
            for event in [
                PgXactCallbackEvent::Commit,
                PgXactCallbackEvent::Abort,
                PgXactCallbackEvent::Prepare,
            ] {
                register_xact_callback(event, forget_recent_inputs);
            }
        }
        &mut self.inputs
    }
}

fn raise(error: EmbedError) -> ! {
    let code = match &error {
        EmbedError::Empty => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        EmbedError::UnknownFormat | EmbedError::Corrupt { .. } => {
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION
        }
        EmbedError::Unsupported { .. } => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        EmbedError::TooLarge { .. } => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        EmbedError::Manifest { .. } => PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
        EmbedError::Runtime { .. } => PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
    };
    let report = UserError::new(code, error.to_string());
    match error {
        EmbedError::TooLarge { .. } => report
            .detail(format!(
                "Images may be at most {} pixels per side and {} megapixels.",
                imgsim_embed::MAX_SIDE,
                imgsim_embed::MAX_PIXELS / 1_000_000
            ))
            .raise(),
        EmbedError::Manifest { .. } => report
            .hint("Check imgsim.model and the files it names.")
            .raise(),
        _ => report.raise(),
    }
}

/// Run `f` with this backend's embedder, loading it if needed.
fn with_embedder<T>(f: impl FnOnce(&mut Loaded) -> T) -> T {
    let manifest_path = MODEL
        .get()
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(p.to_string_lossy().into_owned()))
        .unwrap_or_else(default_manifest);
    let threads = THREADS.get() as usize;
    EMBEDDER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let stale =
            !matches!(&*slot, Some(l) if l.manifest_path == manifest_path && l.threads == threads);
        if stale {
            *slot = None; // free the old session before loading another
            let manifest = Manifest::load(&manifest_path).unwrap_or_else(|e| raise(e));
            let embedder = Embedder::new(&manifest, &onnxruntime_library(), threads, DIMS)
                .unwrap_or_else(|e| raise(e));
            let recent = Recent::new();
            *slot = Some(Loaded {
                manifest_path,
                threads,
                embedder,
                recent,
            });
        }
        f(slot.as_mut().expect("embedder loaded"))
    })
}

fn to_vector(descriptor: &[f32]) -> Vector2048 {
    let mut values = Box::new([f16::ZERO; DIMS]);
    for (slot, value) in values.iter_mut().zip(descriptor) {
        *slot = f16::from_f32(*value);
    }
    Vector2048::from_halves(values)
}

/// The model's descriptor of an encoded image: 2048-d, unit length.
///
/// IMMUTABLE for a given model: embeddings belong to the model that made them.
#[pg_extern(immutable, strict, parallel_safe)]
fn image_embedding(image: &[u8]) -> Vector2048 {
    pg_sys::check_for_interrupts!();
    with_embedder(|loaded| {
        let recent = loaded.recent.current();
        if let Some(vector) = recent.get(image) {
            return Ok(vector);
        }
        MODEL_RUNS.set(MODEL_RUNS.get() + 1);
        let vector = to_vector(&loaded.embedder.embed(image)?);
        recent.insert(image, vector.clone());
        Ok(vector)
    })
    .unwrap_or_else(|e| raise(e))
}

/// How many images this backend has run through the model: calls of
/// `image_embedding` not answered from the descriptors kept for the
/// transaction's latest inputs. For tests and diagnostics.
#[pg_extern(volatile, parallel_restricted)]
fn imgsim_model_runs() -> i64 {
    MODEL_RUNS.get()
}
