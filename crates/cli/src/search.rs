//! `imgsim search`: the k stored images nearest to a query image.

use std::collections::HashMap;
use std::fs;

use crate::args::SearchOptions;
use crate::{db, html};

pub struct Match {
    pub id: i64,
    pub path: String,
    pub distance: f64,
}

pub fn run(options: &SearchOptions) -> Result<(), crate::Error> {
    let query_image =
        fs::read(&options.query).map_err(|e| format!("{}: {e}", options.query.display()))?;
    let mut client = db::connect(&options.dsn)?;
    let table = db::quote_table(&options.table);
    // The uncorrelated scalar subquery is computed once (an InitPlan, or folded while
    // planning as image_embedding is immutable), so to the planner the ORDER BY is
    // `emb <-> constant`, which an annoy (or any ordering) index on emb can serve. ORDER BY the output column keeps the
    // same expression for distance and ordering, so it is not evaluated twice.
    let nearest = format!(
        "SELECT id, path, emb <-> (SELECT image_embedding($1)) AS distance
         FROM {table} ORDER BY distance LIMIT $2"
    );
    let matches: Vec<Match> = client
        .query(&nearest, &[&query_image, &options.k])
        .map_err(|e| format!("search in {table} failed: {}", db::describe(&e)))?
        .iter()
        .map(|row| Match {
            id: row.get(0),
            path: row.get(1),
            distance: row.get(2),
        })
        .collect();

    print_table(&matches);

    if let Some(out) = &options.html {
        let ids: Vec<i64> = matches.iter().map(|m| m.id).collect();
        let rows = client
            .query(
                &format!("SELECT id, image FROM {table} WHERE id = ANY($1)"),
                &[&ids],
            )
            .map_err(|e| {
                format!(
                    "cannot fetch matched images from {table}: {}",
                    db::describe(&e)
                )
            })?;
        // A row deleted since the search has no image: its figure shows "no preview".
        let mut images_by_id: HashMap<i64, Vec<u8>> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        let ranked_images: Vec<Vec<u8>> = matches
            .iter()
            .map(|m| images_by_id.remove(&m.id).unwrap_or_default())
            .collect();
        let page = html::results_page(
            &options.query.display().to_string(),
            &query_image,
            &matches,
            &ranked_images,
        );
        fs::write(out, page).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

fn print_table(matches: &[Match]) {
    let id_width = matches
        .iter()
        .map(|m| m.id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let distance_width = matches
        .iter()
        .map(|m| format!("{:.4}", m.distance).len())
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:>4}  {:>id_width$}  {:>distance_width$}  path",
        "rank", "id", "distance"
    );
    for (rank, m) in (1..).zip(matches) {
        println!(
            "{rank:>4}  {:>id_width$}  {:>distance_width$.4}  {}",
            m.id, m.distance, m.path
        );
    }
}
