//! The `search --html` page: one self-contained file, thumbnails inlined as data: URIs.

use std::fmt::Write;

use base64::Engine;

use crate::nearest::Match;
use crate::thumbnail;

/// Once every image has loaded or failed (`load` fires after both), records how
/// many decoded, so a headless browser can check that all thumbnails render.
const COUNT_LOADED_IMAGES: &str = "window.addEventListener('load', () => {
  const images = Array.from(document.images);
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});";

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
figure{display:inline-block;vertical-align:top;margin:0 1em 1.5em 0;padding:.5em;background:#fff;
border:1px solid #ddd;border-radius:4px;max-width:256px}
figure img{display:block;max-width:256px;max-height:256px}
figcaption{font-size:.85em;margin-top:.4em;word-break:break-all}
.query{border-color:#36c}.missing{width:256px;height:96px;background:#eee;color:#888;
display:flex;align-items:center;justify-content:center}";

pub fn results_page(
    query_name: &str,
    query_image: &[u8],
    matches: &[Match],
    match_images: &[Vec<u8>],
) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>imgsim: {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Query</h1>\n<figure class=\"query\">{img}<figcaption>{title}</figcaption></figure>\n\
         <h1>Top {k} matches</h1>\n",
        title = escape(query_name),
        img = thumbnail_element(query_image),
        k = matches.len(),
    );
    for ((rank, m), image) in (1..).zip(matches).zip(match_images) {
        let _ = writeln!(
            page,
            "<figure>{img}<figcaption><b>#{rank}</b> id {id}, distance {distance:.4}<br>{path}</figcaption></figure>",
            img = thumbnail_element(image),
            id = m.id,
            distance = m.distance,
            path = escape(&m.path),
        );
    }
    let _ = write!(
        page,
        "<script>\n{COUNT_LOADED_IMAGES}\n</script>\n</body>\n</html>\n"
    );
    page
}

/// An `<img>` with the thumbnail inlined, or a placeholder when this client cannot
/// decode what the server could (which the loaded-images count then shows).
fn thumbnail_element(image_bytes: &[u8]) -> String {
    match thumbnail::jpeg(image_bytes) {
        Ok(jpeg) => format!(
            "<img alt=\"\" src=\"data:image/jpeg;base64,{}\">",
            base64::engine::general_purpose::STANDARD.encode(jpeg)
        ),
        Err(e) => format!(
            "<div class=\"missing\">no preview: {}</div>",
            escape(&e.to_string())
        ),
    }
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
