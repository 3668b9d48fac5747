//! Identical concurrent GET requests share one computation: the first runs, the others wait
//! for its response and get a copy. A dashboard herd refreshing at once costs one query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;

/// Largest response shared (the biggest legal page of packets is well below this).
const MAX_SHARED_BODY: usize = 64 * 1024 * 1024;

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

/// Requests in flight, by URI. Holds at most one entry per concurrent distinct request.
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
    if req.method() != Method::GET || req.uri().path() == "/ws" {
        return next.run(req).await;
    }
    let key = req.uri().to_string();
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
}
