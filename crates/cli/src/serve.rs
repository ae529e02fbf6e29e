//! `imgsim serve`: search by picture in a browser.
//!
//! One page (`serve_page.html`) and a small JSON API over a pool of connections:
//!
//! * `GET  /api/tables` — the tables that can be searched (id, path, image, emb
//!   columns, as `load` creates them) and the upload limit;
//! * `POST /api/search?table=T&k=K` — the body is the picture; the server embeds
//!   it with `image_embedding` and returns the k nearest rows;
//! * `GET  /api/similar?table=T&id=ID&k=K` — "more like this": the rows nearest
//!   to a stored row;
//! * `GET  /thumbnail?table=T&id=ID` — a small JPEG made from the stored bytes,
//!   kept in an in-memory LRU cache, so full-size images never reach the browser.
//!
//! Errors are JSON `{"error": ..., "sqlstate": ...}` with a fitting HTTP status;
//! the page shows the message. The table parameter is parsed as a [`TableName`]
//! (quoted as an identifier) and must name a table with the expected columns;
//! user text never goes into SQL otherwise (ids, k and the image are parameters).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::tokio_postgres::{self, NoTls};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::args::ServeArgs;
use crate::db::{self, TableName};
use crate::nearest::{self, Match};
use crate::thumbnail;

const PAGE: &str = include_str!("serve_page.html");
const MAX_K: i64 = 100;
/// Thumbnails are 5–30 KB: a few thousand fit in a few tens of MB.
const THUMBNAIL_CACHE_ENTRIES: usize = 4096;

/// Tables with the columns `load` creates, by the name the page offers
/// (`table`, or `schema.table` outside `public`). `$1` limits it to one table
/// (its quoted name), or is NULL for all.
const SEARCHABLE_TABLES: &str = "
SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text
            ELSE n.nspname || '.' || c.relname END AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND ($1::text IS NULL OR c.oid = to_regclass($1))
  AND has_table_privilege(c.oid, 'SELECT')
  AND (SELECT count(*) FROM pg_attribute a
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         AND ((a.attname = 'id' AND a.atttypid = 'int8'::regtype)
           OR (a.attname = 'path' AND a.atttypid = 'text'::regtype)
           OR (a.attname = 'image' AND a.atttypid = 'bytea'::regtype)
           OR (a.attname = 'emb' AND a.atttypid = 'vector2048'::regtype))) = 4
ORDER BY 1";

struct App {
    pool: Pool,
    default_table: String,
    max_upload_bytes: usize,
    thumbnails: Mutex<LruCache<(String, i64), Bytes>>,
}

pub fn run(args: &ServeArgs) -> Result<(), crate::Error> {
    tokio::runtime::Runtime::new()?.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<(), crate::Error> {
    let config: tokio_postgres::Config = args
        .connection
        .db
        .parse()
        .map_err(|e| format!("--db: {e}"))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(args.connections.into())
        .build()?;
    // Connect now, so that a wrong DSN or a missing extension fails at start.
    let client = pool
        .get()
        .await
        .map_err(|e| format!("cannot connect to {:?}: {e}", args.connection.db))?;
    let tables = searchable_tables(&client, None)
        .await
        .map_err(|e| format!("cannot list tables: {}", db::describe(&e)))?;
    drop(client);
    let default_table = table_display_name(&pool, &args.table).await?;
    let app = Arc::new(App {
        pool,
        default_table,
        max_upload_bytes: usize::from(args.max_upload_mb) << 20,
        thumbnails: Mutex::new(LruCache::new(
            NonZeroUsize::new(THUMBNAIL_CACHE_ENTRIES).expect("non-zero"),
        )),
    });

    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/tables", get(list_tables))
        .route("/api/search", post(search_by_upload))
        .route("/api/similar", get(search_by_row))
        .route("/thumbnail", get(thumbnail))
        .layer(DefaultBodyLimit::max(app.max_upload_bytes))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!(
        "imgsim serve: listening on http://{}/ (tables: {}); Ctrl-C stops",
        listener.local_addr()?,
        tables.join(", ")
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// The default table's name as the page lists it; an error unless it exists
/// with the expected columns.
async fn table_display_name(pool: &Pool, table: &TableName) -> Result<String, crate::Error> {
    let client = pool.get().await?;
    let names = searchable_tables(&client, Some(table)).await.map_err(|e| {
        format!(
            "cannot look up table {}: {}",
            table.quoted(),
            db::describe(&e)
        )
    })?;
    names.into_iter().next().ok_or_else(|| {
        format!(
            "no table {} with columns id bigint, path text, image bytea, emb vector2048 \
             (imgsim load creates one)",
            table.quoted()
        )
        .into()
    })
}

async fn searchable_tables(
    client: &Object,
    only: Option<&TableName>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let only = only.map(TableName::quoted);
    let rows = client.query(SEARCHABLE_TABLES, &[&only]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// An error as the page shows it.
struct AppError {
    status: StatusCode,
    message: String,
    sqlstate: Option<String>,
}

impl AppError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            message: message.into(),
            sqlstate: None,
        }
    }

    /// A failed query: the status and wording follow the server's SQLSTATE
    /// (image_embedding's codes are listed in the README).
    fn from_query(error: tokio_postgres::Error) -> Self {
        let Some(db_error) = error.as_db_error() else {
            return AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("The database is unavailable: {}", db::describe(&error)),
            );
        };
        let code = db_error.code().code();
        let (status, what) = match code {
            "22023" => (StatusCode::BAD_REQUEST, "The picture is empty"),
            "22P03" => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "This file is not an image the server can read (not an image, truncated or corrupt)",
            ),
            "0A000" => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "This image uses a format feature the server does not support",
            ),
            "54000" => (StatusCode::PAYLOAD_TOO_LARGE, "This image is too large"),
            _ if code.starts_with("22") => (StatusCode::BAD_REQUEST, "The server refused the picture"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "The search failed"),
        };
        AppError {
            status,
            message: format!("{what}: {}", db_error.message()),
            sqlstate: Some(code.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
            sqlstate: Option<String>,
        }
        let body = Body {
            error: self.message,
            sqlstate: self.sqlstate,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<deadpool_postgres::PoolError> for AppError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("No database connection: {error}"),
        )
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

#[derive(Serialize)]
struct TablesResponse {
    tables: Vec<String>,
    default: String,
    max_upload_bytes: usize,
}

async fn list_tables(State(app): State<Arc<App>>) -> Result<Json<TablesResponse>, AppError> {
    let client = app.pool.get().await?;
    let tables = searchable_tables(&client, None)
        .await
        .map_err(AppError::from_query)?;
    Ok(Json(TablesResponse {
        tables,
        default: app.default_table.clone(),
        max_upload_bytes: app.max_upload_bytes,
    }))
}

/// Checks that `name` is a valid table name and names a searchable table.
async fn resolve_table(client: &Object, name: &str) -> Result<TableName, AppError> {
    let table: TableName = name
        .parse()
        .map_err(|e: String| AppError::new(StatusCode::BAD_REQUEST, format!("table {e}")))?;
    let found = searchable_tables(client, Some(&table))
        .await
        .map_err(AppError::from_query)?;
    if found.is_empty() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            format!("No table {name:?} with columns id, path, image and emb"),
        ));
    }
    Ok(table)
}

fn check_k(k: Option<i64>) -> Result<i64, AppError> {
    match k.unwrap_or(10) {
        k @ 1..=MAX_K => Ok(k),
        k => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            format!("k must be between 1 and {MAX_K}, not {k}"),
        )),
    }
}

#[derive(Deserialize)]
struct SearchParams {
    table: String,
    k: Option<i64>,
}

#[derive(Serialize)]
struct SearchResponse {
    table: String,
    /// The stored row searched by ("more like this"); absent for an upload.
    query: Option<Match>,
    matches: Vec<Match>,
}

async fn search_by_upload(
    State(app): State<Arc<App>>,
    params: Result<Query<SearchParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SearchResponse>, AppError> {
    let Query(params) = params?;
    let image = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The picture is larger than the upload limit of {} MB",
                    app.max_upload_bytes >> 20
                ),
            )
        } else {
            AppError::new(rejection.status(), rejection.body_text())
        }
    })?;
    let k = check_k(params.k)?;
    let client = app.pool.get().await?;
    let table = resolve_table(&client, &params.table).await?;
    let statement = client
        .prepare_cached(&nearest::nearest_to_image_sql(&table))
        .await
        .map_err(AppError::from_query)?;
    let rows = client
        .query(&statement, &[&image.as_ref(), &k])
        .await
        .map_err(AppError::from_query)?;
    Ok(Json(SearchResponse {
        table: params.table,
        query: None,
        matches: rows.iter().map(Match::from_row).collect(),
    }))
}

#[derive(Deserialize)]
struct RowParams {
    table: String,
    id: i64,
    k: Option<i64>,
}

async fn search_by_row(
    State(app): State<Arc<App>>,
    params: Result<Query<RowParams>, QueryRejection>,
) -> Result<Json<SearchResponse>, AppError> {
    let Query(params) = params?;
    let k = check_k(params.k)?;
    let client = app.pool.get().await?;
    let table = resolve_table(&client, &params.table).await?;
    let query_row = client
        .query_opt(
            &format!(
                "SELECT id, path, 0::float8 AS distance FROM {} WHERE id = $1",
                table.quoted()
            ),
            &[&params.id],
        )
        .await
        .map_err(AppError::from_query)?
        .ok_or_else(|| no_such_row(&params.table, params.id))?;
    let statement = client
        .prepare_cached(&nearest::nearest_to_row_sql(&table))
        .await
        .map_err(AppError::from_query)?;
    let rows = client
        .query(&statement, &[&params.id, &k])
        .await
        .map_err(AppError::from_query)?;
    Ok(Json(SearchResponse {
        table: params.table,
        query: Some(Match::from_row(&query_row)),
        matches: rows.iter().map(Match::from_row).collect(),
    }))
}

fn no_such_row(table: &str, id: i64) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        format!("No row with id {id} in {table}"),
    )
}

#[derive(Deserialize)]
struct ThumbnailParams {
    table: String,
    id: i64,
}

async fn thumbnail(
    State(app): State<Arc<App>>,
    params: Result<Query<ThumbnailParams>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(params) = params?;
    let key = (params.table, params.id);
    let cached = app.thumbnails.lock().unwrap().get(&key).cloned();
    let jpeg = match cached {
        Some(jpeg) => jpeg,
        None => {
            let client = app.pool.get().await?;
            let table = resolve_table(&client, &key.0).await?;
            let image: Vec<u8> = client
                .query_opt(
                    &format!("SELECT image FROM {} WHERE id = $1", table.quoted()),
                    &[&key.1],
                )
                .await
                .map_err(AppError::from_query)?
                .ok_or_else(|| no_such_row(&key.0, key.1))?
                .get(0);
            drop(client);
            // Decoding and resizing take milliseconds of CPU: off the async threads.
            let jpeg = tokio::task::spawn_blocking(move || thumbnail::jpeg(&image))
                .await
                .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .map_err(|e| {
                    AppError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("No preview for row {}: {e}", key.1),
                    )
                })?;
            let jpeg = Bytes::from(jpeg);
            app.thumbnails.lock().unwrap().put(key, jpeg.clone());
            jpeg
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        jpeg,
    )
        .into_response())
}
