//! The control plane's HTTP server on the metrics listener: `/healthz`,
//! `/metrics`, and the API (`/api/v1/devices`, `/api/v1/incidents`).
//!
//! The API must never starve health and metrics, which share the control
//! plane's single thread: its answers are built on tokio's blocking pool,
//! at most [`API_CONCURRENCY`] at a time (more get 503 at once, with
//! `Retry-After`), and `/api/v1/devices` is paginated, so that one answer
//! costs a page, not the whole inventory. `/healthz` answers from the
//! control plane's thread without any lock; `/metrics` reads counters and
//! the inventory's kept device counts.
//!
//! The API is a map of the network's devices: it asks a bearer token
//! (`[api] token_file`) or, without one, is served on a loopback listener
//! only. `/metrics` asks it too when `[api] protect_metrics` is set.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::IncidentView;
use crate::metrics::{Metrics, Telemetry};

/// API answers built at once; more are refused (503) rather than queued, so
/// that a crowd of clients costs at most this many blocking threads.
pub const API_CONCURRENCY: usize = 2;

/// Devices per page of `/api/v1/devices` unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 1_000;

/// Most devices per page: about 6.5 MB of JSON.
pub const MAX_PAGE: usize = 10_000;

/// Who may read the API.
#[derive(Clone, Debug)]
pub struct ApiAccess {
    /// The bearer token and its file, when configured; SIGHUP reads the file
    /// again ([`ApiAccess::reload_token`]).
    token: Option<ApiToken>,
    /// Without a token: true when the listener is a loopback address.
    loopback: bool,
    /// `/metrics` asks the token too.
    protect_metrics: bool,
}

/// The token in force, shared by every clone of the access, and its file.
#[derive(Clone, Debug)]
struct ApiToken {
    secret: Arc<ArcSwap<Box<[u8]>>>,
    path: PathBuf,
}

/// Why the API's token cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("api.token_file {}: {reason}", path.display())]
pub struct ApiTokenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The token written in `path` (whitespace around it ignored; an empty one,
/// or one holding whitespace, refused).
fn read_token(path: &Path) -> Result<Box<[u8]>, ApiTokenError> {
    let error = |reason: String| ApiTokenError {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(error("the file is empty: write the token in it".into()));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(error(
            "the token holds whitespace: write it on one line, alone".into(),
        ));
    }
    Ok(token.as_bytes().into())
}

impl ApiAccess {
    /// The access the settings ask for, with the token read from `token_file`.
    pub fn load(
        token_file: Option<&Path>,
        protect_metrics: bool,
        listen: SocketAddr,
    ) -> Result<ApiAccess, ApiTokenError> {
        let token = match token_file {
            Some(path) => Some(ApiToken {
                secret: Arc::new(ArcSwap::from_pointee(read_token(path)?)),
                path: path.to_owned(),
            }),
            None if protect_metrics => {
                return Err(ApiTokenError {
                    path: PathBuf::from("(none)"),
                    reason: "api.protect_metrics needs api.token_file".into(),
                });
            }
            None => None,
        };
        Ok(ApiAccess {
            token,
            loopback: listen.ip().is_loopback(),
            protect_metrics,
        })
    }

    /// Reads the token file again (SIGHUP), so a rotated token takes effect
    /// without a restart: true when the token changed. A file that cannot be
    /// read now (after the privilege drop, a file readable by root only) or
    /// holds no valid token leaves the token in force.
    pub fn reload_token(&self) -> Result<bool, ApiTokenError> {
        let Some(token) = &self.token else {
            return Ok(false);
        };
        let fresh = read_token(&token.path)?;
        if **token.secret.load() == fresh {
            return Ok(false);
        }
        token.secret.store(Arc::new(fresh));
        Ok(true)
    }

    /// True when the API is refused to everyone: no token, and a listener
    /// other hosts can reach.
    pub fn api_closed(&self) -> bool {
        self.token.is_none() && !self.loopback
    }

    /// True when `headers` carry the token (`Authorization: Bearer TOKEN`).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        let secret = token.secret.load();
        headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| bearer(value.as_bytes()))
            .any(|offered| same_secret(offered, &secret))
    }

    /// `None` when `headers` may read the API; the refusal otherwise.
    fn refuse_api(&self, headers: &HeaderMap) -> Option<Response> {
        match &self.token {
            Some(_) if self.authorized(headers) => None,
            Some(_) => Some(unauthorized()),
            None if self.loopback => None,
            None => Some(
                (
                    StatusCode::FORBIDDEN,
                    "the API needs api.token_file on a listener other than loopback\n",
                )
                    .into_response(),
            ),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Compares a secret in a time that does not depend on where it differs.
fn same_secret(offered: &[u8], secret: &[u8]) -> bool {
    offered.len() == secret.len()
        && offered
            .iter()
            .zip(secret)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is needed (Authorization: Bearer TOKEN)\n",
    )
        .into_response()
}

/// What the server's handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// What it is computed from (the inventory among it).
    pub telemetry: Arc<Telemetry>,
    /// Incidents, when on.
    pub incidents: Option<Arc<IncidentView>>,
    /// Who may read what.
    pub access: ApiAccess,
    /// API answers being built.
    pub api_slots: Arc<Semaphore>,
}

/// The server's routes.
pub fn router(state: HttpState) -> axum::Router {
    let metrics_state = state.clone();
    let devices_state = state.clone();
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| {
                let state = metrics_state.clone();
                async move {
                    if state.access.protect_metrics && !state.access.authorized(&headers) {
                        return unauthorized();
                    }
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        state.metrics.render(&state.telemetry),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/api/v1/devices",
            axum::routing::get(move |headers: HeaderMap, RawQuery(query): RawQuery| {
                let state = devices_state.clone();
                async move {
                    let (after, limit) = match page_of(query.as_deref()) {
                        Ok(page) => page,
                        Err(message) => {
                            return (StatusCode::BAD_REQUEST, format!("{message}\n"))
                                .into_response();
                        }
                    };
                    let inventory = state.telemetry.inventory.clone();
                    api_answer(&state, &headers, move || match inventory {
                        Some(inventory) => crate::inventory::page_to_json(&inventory, after, limit),
                        None => "{\"devices\":[]}".into(),
                    })
                    .await
                }
            }),
        )
        .route(
            "/api/v1/incidents",
            axum::routing::get(move |headers: HeaderMap| {
                let state = state.clone();
                async move {
                    let incidents = state.incidents.clone();
                    api_answer(&state, &headers, move || {
                        incidents.as_deref().map_or_else(
                            || "{\"open\":[],\"closed\":[]}".to_owned(),
                            IncidentView::to_json,
                        )
                    })
                    .await
                }
            }),
        )
}

/// An API answer: refused without access, 503 when [`API_CONCURRENCY`]
/// answers are being built, else `build` run on the blocking pool.
async fn api_answer(
    state: &HttpState,
    headers: &HeaderMap,
    build: impl FnOnce() -> String + Send + 'static,
) -> Response {
    if let Some(refusal) = state.access.refuse_api(headers) {
        return refusal;
    }
    let Ok(permit) = state.api_slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "busy: too many API requests at once, retry shortly\n",
        )
            .into_response();
    };
    let body = tokio::task::spawn_blocking(move || {
        let body = build();
        drop(permit);
        body
    })
    .await;
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `after` and `limit` of a `/api/v1/devices` query.
fn page_of(query: Option<&str>) -> Result<(Option<IpAddr>, usize), String> {
    let mut after = None;
    let mut limit = DEFAULT_PAGE;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decoded(value);
        match name {
            "after" => {
                after = Some(
                    value
                        .parse::<IpAddr>()
                        .map_err(|_| format!("after: {value:?} is not an IP address"))?,
                );
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        format!("limit: {value:?} is not a number from 1 to {MAX_PAGE}")
                    })?;
            }
            _ => return Err(format!("unknown parameter {name:?}: use after and limit")),
        }
    }
    Ok((after, limit))
}

/// `%XX` escapes decoded (an IPv6 address's colons arrive as `%3A`).
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_asked_by_address_and_limit() {
        assert_eq!(page_of(None), Ok((None, DEFAULT_PAGE)));
        assert_eq!(
            page_of(Some("after=10.0.0.5&limit=2")),
            Ok((Some("10.0.0.5".parse().unwrap()), 2))
        );
        assert_eq!(
            page_of(Some("after=fd00%3A%3A1")),
            Ok((Some("fd00::1".parse().unwrap()), DEFAULT_PAGE))
        );
        assert!(page_of(Some("limit=0")).is_err());
        assert!(page_of(Some("limit=10001")).is_err());
        assert!(page_of(Some("after=nowhere")).is_err());
        assert!(page_of(Some("offset=3")).is_err());
    }

    #[test]
    fn only_the_exact_bearer_token_opens_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], 9108));
        let access = ApiAccess::load(Some(&path), false, listen).unwrap();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            access.authorized(&headers)
        };
        assert!(with("Bearer s3cret-token"));
        assert!(with("bearer s3cret-token"));
        assert!(!with("Bearer s3cret-toke"));
        assert!(!with("Bearer s3cret-token2"));
        assert!(!with("Basic s3cret-token"));
        assert!(!access.authorized(&HeaderMap::new()));
        // Rotated: the new token opens, the old one no longer; a file made
        // empty keeps the new token in force.
        assert!(!access.reload_token().unwrap());
        std::fs::write(&path, "rotated-token").unwrap();
        assert!(access.clone().reload_token().unwrap());
        assert!(with("Bearer rotated-token"));
        assert!(!with("Bearer s3cret-token"));
        std::fs::write(&path, "").unwrap();
        assert!(access.reload_token().is_err());
        assert!(with("Bearer rotated-token"));
    }
}
