//! The live view and the replay export on the admin port, wherever a control plane runs
//! (`sluice run`, `sluice controller`):
//! - `GET /ui`: one self-contained page (`ui/page.html`, hand-written HTML, CSS, JS and SVG;
//!   nothing fetched from elsewhere) that polls `/ui/data` every second;
//! - `GET /ui/data`: JSON for the page and for scripts
//!   ([`sluice_controller::overview::Overview`]);
//! - `GET /revisions/{ns}/{name}/trace.csv`: a Revision's per-second samples in the format
//!   `sluice autoscaler simulate --trace` reads ([`History::trace_csv`]).
//!
//! Read-only, no secrets: hosts, splits, conditions and load figures only.

use http::StatusCode;
use sluice_controller::history::History;
use sluice_controller::hub::Hub;
use sluice_controller::overview::SHOWN_SECONDS;
use sluice_proxy::admin::{AdminApp, AdminResponse};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const PAGE: &str = include_str!("ui/page.html");

/// `/revisions/{ns}/{name}/trace.csv` → `(ns, name)`.
fn trace_path(path: &str) -> Option<(&str, &str)> {
    let rest = path
        .strip_prefix("/revisions/")?
        .strip_suffix("/trace.csv")?;
    let (namespace, name) = rest.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && !s.contains('/');
    (valid(namespace) && valid(name)).then_some((namespace, name))
}

/// The answer to a GET under `/revisions/`.
fn trace(history: &History, path: &str) -> AdminResponse {
    let Some((namespace, name)) = trace_path(path) else {
        return AdminResponse::text(
            StatusCode::NOT_FOUND,
            "not found: want /revisions/{namespace}/{name}/trace.csv\n",
        );
    };
    match history.trace_csv(&format!("{namespace}/{name}")) {
        Some(csv) => AdminResponse {
            status: StatusCode::OK,
            content_type: "text/csv; charset=utf-8",
            body: csv.into_bytes(),
        },
        None if history.window() == 0 => AdminResponse::text(
            StatusCode::NOT_FOUND,
            format!("revision {namespace}/{name}: no history is kept (--history-window 0)\n"),
        ),
        None => AdminResponse::text(
            StatusCode::NOT_FOUND,
            format!(
                "revision {namespace}/{name}: no autoscaler history (no such Revision, or one the autoscaler does not scale)\n"
            ),
        ),
    }
}

/// Adds `/ui`, `/ui/data` and `/revisions/{ns}/{name}/trace.csv` to `admin`.
pub fn routes(admin: AdminApp, hub: Arc<Hub>, history: Arc<History>) -> AdminApp {
    let traces = history.clone();
    admin
        .route("/ui", || AdminResponse {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            body: PAGE.as_bytes().to_vec(),
        })
        .route("/ui/data", move || {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            AdminResponse::json(&hub.overview(history.view(SHOWN_SECONDS), now))
        })
        .prefix("/revisions/", move |path| trace(&traces, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_paths_name_one_revision() {
        let cases = [
            ("/revisions/ns/web-1/trace.csv", Some(("ns", "web-1"))),
            ("/revisions/ns/web-1/trace.csv/", None),
            ("/revisions/ns/trace.csv", None),
            ("/revisions//web/trace.csv", None),
            ("/revisions/ns//trace.csv", None),
            ("/revisions/a/b/c/trace.csv", None),
            ("/revisions/ns/web-1/trace.json", None),
            ("/revisions/", None),
        ];
        for (path, want) in cases {
            assert_eq!(trace_path(path), want, "{path}");
        }
    }

    #[test]
    fn an_unknown_revision_is_a_404_that_names_it() {
        let history = History::new(std::time::Duration::from_secs(60));
        let answer = trace(&history, "/revisions/ns/nope/trace.csv");
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let body = String::from_utf8(answer.body).expect("text");
        assert!(
            body.starts_with("revision ns/nope: no autoscaler history"),
            "{body}"
        );
        let off = History::new(std::time::Duration::ZERO);
        let body = String::from_utf8(trace(&off, "/revisions/ns/a/trace.csv").body).expect("text");
        assert!(body.contains("--history-window 0"), "{body}");
        let body = String::from_utf8(trace(&history, "/revisions/x").body).expect("text");
        assert!(body.contains("want /revisions/"), "{body}");
    }
}
