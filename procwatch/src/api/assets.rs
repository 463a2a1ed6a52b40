//! The web dashboard's files, compiled into the binary: `GET /` serves the page and
//! `GET /assets/{path}` the rest. Nothing is loaded from a CDN or a web directory at run time,
//! so the dashboard works offline and cannot go missing beside the binary.

/// The dashboard's files: (path under `/assets/`, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
];

/// The content type and bytes of the dashboard file at `path` ("" or "index.html": the page);
/// `None` for anything else (the table is fixed, so no path can reach another file).
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    FILES
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|&(_, content_type, bytes)| (content_type, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        let (_, bytes) = asset(path).unwrap_or_else(|| panic!("{path} is served"));
        std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{path} is UTF-8: {e}"))
    }

    #[test]
    fn the_page_is_served_at_the_root_and_by_name() {
        for p in ["", "/", "index.html", "/index.html"] {
            let (ct, body) = asset(p).unwrap_or_else(|| panic!("{p:?} is served"));
            assert_eq!(ct, "text/html; charset=utf-8");
            assert!(body.starts_with(b"<!doctype html>"), "{p:?}");
        }
        assert_eq!(
            asset("app.js").map(|a| a.0),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            asset("style.css").map(|a| a.0),
            Some("text/css; charset=utf-8")
        );
    }

    #[test]
    fn nothing_outside_the_table_is_served() {
        for p in [
            "../Cargo.toml",
            "assets/app.js",
            "app.js/",
            "APP.JS",
            "nope.js",
            "lib.rs",
            "..",
        ] {
            assert!(asset(p).is_none(), "{p:?} must not be served");
        }
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        let page = text("");
        let mut named = 0;
        for part in page.split("\"/assets/").skip(1) {
            let file = part.split('"').next().unwrap_or_default();
            assert!(asset(file).is_some(), "index.html names {file}, not served");
            named += 1;
        }
        assert_eq!(named, FILES.len() - 1, "every file is used by the page");
    }

    /// Offline and self-contained: no file refers to another host (CDN, web fonts).
    #[test]
    fn no_asset_loads_anything_from_elsewhere() {
        for (name, _, _) in FILES {
            let t = text(name);
            for needle in ["http://", "https://", "\"//", "'//", "url(//", "@import"] {
                assert!(!t.contains(needle), "{name} contains {needle:?}");
            }
        }
    }

    /// Process names, paths and reasons are hostile data: the script builds the page from
    /// text nodes only; nothing that parses a string as HTML or code may appear in it.
    #[test]
    fn the_script_never_parses_data_as_markup_or_code() {
        let js = text("app.js");
        for needle in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "createContextualFragment",
            "DOMParser",
        ] {
            assert!(!js.contains(needle), "app.js uses {needle}");
        }
    }
}
