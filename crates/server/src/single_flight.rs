//! Identical concurrent GET requests share one computation: the first runs, the others wait
//! for its response and get a copy. A dashboard herd refreshing at once costs one query.
//!
//! "Identical" is decided on the normalised request ([`flight_key`]): the path, the query
//! parameters decoded and sorted by name (so `?b=2&a=1` and `?a=1&b=%32` share), and the
//! conditional headers. The conditional headers are part of the key because the answer to
//! `If-None-Match` may be a bodyless 304 that an unconditional request must never be handed;
//! keyed on the URI alone, 2 of 1,000 unconditional requests once got one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

/// Largest response shared (the biggest legal page of packets is well below this).
const MAX_SHARED_BODY: usize = 64 * 1024 * 1024;

/// The headers that make one answer unfit for another request with the same URI.
const CONDITIONAL: [header::HeaderName; 4] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
];

/// The normalised identity of a GET: its path, its query parameters decoded and stably
/// sorted by name (repeated names keep their order, so first-wins and last-wins handlers both
/// see the same thing under one key), and the value of each conditional header present. Every
/// part is length-prefixed, so no two different requests write the same key.
pub fn flight_key(req: &Request) -> String {
    let mut pairs: Vec<(String, String)> =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri())
            .map(|q| q.0)
            .unwrap_or_default();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let path = req.uri().path();
    let mut key = String::with_capacity(path.len() + 64);
    let _ = write!(key, "{}:{path}", path.len());
    for (k, v) in &pairs {
        let _ = write!(key, "&{}:{k}={}:{v}", k.len(), v.len());
    }
    for name in CONDITIONAL {
        for v in req.headers().get_all(&name) {
            let v = String::from_utf8_lossy(v.as_bytes());
            let _ = write!(key, "|{name}:{}:{v}", v.len());
        }
    }
    key
}

#[derive(Clone)]
struct Shared {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Shared {
    fn response(&self) -> Response {
        let mut r = Response::new(Body::from(self.body.clone()));
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// Requests in flight, by [`flight_key`]. Holds at most one entry per concurrent distinct request.
#[derive(Default)]
pub struct InFlight {
    map: Mutex<HashMap<String, broadcast::Sender<Arc<Shared>>>>,
}

/// Removes the entry when the leading request finishes or is cancelled, so followers never
/// wait on a request that will not answer.
struct Leader<'a> {
    flights: &'a InFlight,
    key: String,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.flights.map.lock() {
            m.remove(&self.key);
        }
    }
}

/// The middleware.
pub async fn single_flight(
    State(flights): State<Arc<InFlight>>,
    req: Request,
    next: Next,
) -> Response {
    // A WebSocket upgrade (at /ws, or any UI path as CoreScope's app asks) is one client's
    // own connection, never a shared answer.
    if req.method() != Method::GET
        || req.uri().path() == "/ws"
        || req.headers().contains_key(axum::http::header::UPGRADE)
    {
        return next.run(req).await;
    }
    let key = flight_key(&req);
    let (tx, follower) = {
        let Ok(mut m) = flights.map.lock() else {
            return next.run(req).await;
        };
        match m.get(&key) {
            Some(tx) => (None, Some(tx.subscribe())),
            None => {
                let (tx, _) = broadcast::channel(1);
                m.insert(key.clone(), tx.clone());
                (Some(tx), None)
            }
        }
    };
    if let Some(mut rx) = follower {
        return match rx.recv().await {
            Ok(shared) => shared.response(),
            // The leader was cancelled or its body was not shareable: do the work.
            Err(_) => next.run(req).await,
        };
    }
    let leader = Leader {
        flights: &flights,
        key,
    };
    let res = next.run(req).await;
    let (parts, body) = res.into_parts();
    let body = match axum::body::to_bytes(body, MAX_SHARED_BODY).await {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let shared = Arc::new(Shared {
        status: parts.status,
        headers: parts.headers,
        body,
    });
    if let (Ok(mut m), Some(tx)) = (flights.map.lock(), tx) {
        m.remove(&leader.key);
        let _ = tx.send(shared.clone());
    }
    drop(leader);
    shared.response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_requests_run_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let c = c.clone();
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(InFlight::default()),
                single_flight,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let fetch = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let all: Vec<_> = (0..8).map(|_| tokio::spawn(fetch("/slow"))).collect();
        for r in all {
            assert!(r.await.unwrap().ends_with("done"));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "identical requests were computed more than once"
        );
        // Different URIs are different computations; later requests compute afresh.
        let a = tokio::spawn(fetch("/slow?a=1"));
        let b = tokio::spawn(fetch("/slow?a=2"));
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A slow route that answers 304 to a matching `If-None-Match`, as the UI's files do.
    fn conditional_app(calls: Arc<AtomicUsize>) -> Router {
        Router::new()
            .route(
                "/file",
                get(move |headers: HeaderMap| {
                    let c = calls.clone();
                    async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if headers.get(header::IF_NONE_MATCH).is_some() {
                            StatusCode::NOT_MODIFIED.into_response()
                        } else {
                            "body".into_response()
                        }
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(InFlight::default()),
                single_flight,
            ))
    }

    async fn send(addr: std::net::SocketAddr, head: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A conditional request leads and unconditional ones arrive while it runs: they must not
    /// be handed its bodyless 304 (the leader is certainly still running when they arrive, so
    /// this does not depend on timing).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_and_unconditional_requests_never_share() {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = conditional_app(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cond =
            "GET /file HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"abc\"\r\nConnection: close\r\n\r\n";
        let plain = "GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let leader = tokio::spawn(send(addr, cond.to_string()));
        // Wait until the leader is computing.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let followers: Vec<_> = (0..4)
            .map(|i| {
                tokio::spawn(send(
                    addr,
                    if i % 2 == 0 { plain } else { cond }.to_string(),
                ))
            })
            .collect();
        assert!(leader.await.unwrap().starts_with("HTTP/1.1 304"));
        for (i, f) in followers.into_iter().enumerate() {
            let out = f.await.unwrap();
            if i % 2 == 0 {
                assert!(
                    out.starts_with("HTTP/1.1 200") && out.ends_with("body"),
                    "{out}"
                );
            } else {
                assert!(out.starts_with("HTTP/1.1 304"), "{out}");
            }
        }
    }

    /// The key is the decoded, sorted query: reordered and differently escaped parameters are
    /// the same request; a repeated parameter or another value is not.
    #[test]
    fn the_key_is_the_normalised_query() {
        let key = |uri: &str, inm: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(v) = inm {
                b = b.header(header::IF_NONE_MATCH, v);
            }
            flight_key(&b.body(Body::empty()).unwrap())
        };
        assert_eq!(key("/a?x=1&y=2", None), key("/a?y=2&x=%31", None));
        assert_ne!(key("/a?x=1", None), key("/a?x=2", None));
        assert_ne!(key("/a?x=1&x=2", None), key("/a?x=2", None));
        assert_ne!(key("/a?x=1&x=2", None), key("/a?x=2&x=1", None));
        assert_ne!(key("/a?x=1", None), key("/b?x=1", None));
        assert_ne!(key("/a?x=1", None), key("/a?x=1", Some("\"e\"")));
        assert_ne!(key("/a", Some("\"e\"")), key("/a", Some("\"f\"")));
        // Length prefixes: a value cannot imitate another parameter.
        assert_ne!(key("/a?x=1%26y%3D2", None), key("/a?x=1&y=2", None));
    }
}
