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
//!
//! `image_region_embeddings(bytea)` adds the descriptors of 13 windows of the
//! picture (issue 14's region search, README "Searching by regions").

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::path::PathBuf;

use half::f16;
use imgsim_embed::{region_boxes, EmbedError, Embedder, Manifest, RecentInputs};
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
    /// Model runs of this backend: one per image embedded (not answered from
    /// `Recent`), one per region cropped out of an image.
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

/// The descriptors of a picture and of 13 windows of it, for region search:
/// region 0 is the whole picture, exactly `image_embedding(image)` (answered
/// from the descriptors kept for the transaction's latest inputs when it can
/// be), regions 1-4 a 2x2 grid of windows of 2/3 of each side, regions 5-13 a
/// 3x3 grid of windows of 1/2 of each side, row by row. `x`, `y`, `w`, `h` are
/// the window's left, top, width and height as fractions of the picture once
/// its EXIF orientation is applied. Each window is cut out and embedded as a
/// picture of its own: 13 model runs (14 when region 0 is not kept).
///
/// IMMUTABLE, as image_embedding is: for a given model.
#[pg_extern(immutable, strict, parallel_safe)]
fn image_region_embeddings(
    image: &[u8],
) -> TableIterator<
    'static,
    (
        name!(region, i32),
        name!(x, f32),
        name!(y, f32),
        name!(w, f32),
        name!(h, f32),
        name!(emb, Vector2048),
    ),
> {
    let whole = image_embedding(image);
    pg_sys::check_for_interrupts!();
    let windows =
        with_embedder(|loaded| loaded.embedder.embed_regions(image)).unwrap_or_else(|e| raise(e));
    MODEL_RUNS.set(MODEL_RUNS.get() + windows.len() as i64);
    let embeddings = std::iter::once(whole).chain(windows.iter().map(|d| to_vector(d)));
    let rows = region_boxes()
        .into_iter()
        .zip(embeddings)
        .enumerate()
        .map(|(region, (b, emb))| {
            let (x, y, w, h) = (b.left, b.top, b.width, b.height);
            (region as i32, x as f32, y as f32, w as f32, h as f32, emb)
        })
        .collect::<Vec<_>>();
    TableIterator::new(rows)
}

/// How many model runs this backend has made: calls of `image_embedding` not
/// answered from the descriptors kept for the transaction's latest inputs,
/// and 13 per `image_region_embeddings` (plus its region 0 when not kept).
/// For tests and diagnostics.
#[pg_extern(volatile, parallel_restricted)]
fn imgsim_model_runs() -> i64 {
    MODEL_RUNS.get()
}
