//! The nearest-neighbour queries, shared by `search` and `serve`.

use crate::db::TableName;

/// One row of a result: a stored image and its distance to the query.
#[derive(serde::Serialize)]
pub struct Match {
    pub id: i64,
    pub path: String,
    pub distance: f64,
}

impl Match {
    /// From a row of either query below (`id`, `path`, `distance`).
    pub fn from_row(row: &postgres::Row) -> Match {
        Match {
            id: row.get("id"),
            path: row.get("path"),
            distance: row.get("distance"),
        }
    }
}

/// The `$2` rows nearest to the image bytes `$1`.
///
/// The uncorrelated scalar subquery is computed once (an InitPlan, or folded while
/// planning as image_embedding is immutable), so to the planner the ORDER BY is
/// `emb <-> constant`, which an annoy (or any ordering) index on emb can serve.
/// ORDER BY the output column keeps the same expression for distance and
/// ordering, so it is not evaluated twice.
pub fn nearest_to_image_sql(table: &TableName) -> String {
    format!(
        "SELECT id, path, emb <-> (SELECT image_embedding($1)) AS distance
         FROM {table} ORDER BY distance LIMIT $2",
        table = table.quoted()
    )
}

/// "More like this": the `$2` rows nearest to the stored row `id = $1`, without
/// that row itself. The caller checks first that the row exists (otherwise
/// every distance would be NULL).
pub fn nearest_to_row_sql(table: &TableName) -> String {
    format!(
        "SELECT id, path, emb <-> (SELECT emb FROM {table} WHERE id = $1) AS distance
         FROM {table} WHERE id <> $1 ORDER BY distance LIMIT $2",
        table = table.quoted()
    )
}
