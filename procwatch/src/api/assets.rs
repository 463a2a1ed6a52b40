//! The dashboard's files, compiled into the binary (no web directory that can go missing).
//! Placeholder until the dashboard lands: a page that points at the API.

/// The file at `path` (`""` or `index.html` is the page): its content type and bytes.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "" | "index.html" => Some((
            "text/html; charset=utf-8",
            b"<!doctype html><title>procwatch</title><p>procwatch API: <a href=\"/api\">/api</a></p>\n",
        )),
        _ => None,
    }
}
