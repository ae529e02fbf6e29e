//! `imgsim search`: the k stored images nearest to a query image.

use std::collections::HashMap;
use std::fs;

use crate::args::SearchArgs;
use crate::nearest::{self, Match};
use crate::{db, html};

pub fn run(options: &SearchArgs) -> Result<(), crate::Error> {
    let query_image =
        fs::read(&options.query).map_err(|e| format!("{}: {e}", options.query.display()))?;
    let mut client = db::connect(&options.connection.db)?;
    let table = options.table.quoted();
    let nearest = nearest::nearest_to_image_sql(&options.table);
    let matches: Vec<Match> = client
        .query(&nearest, &[&query_image, &options.k])
        .map_err(|e| format!("search in {table} failed: {}", db::describe(&e)))?
        .iter()
        .map(Match::from_row)
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
