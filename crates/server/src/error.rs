//! API errors: `{"error": "..."}` with the right status code, and `Retry-After` on the answers
//! that mean "come back shortly" (a busy pool, a spent per-client budget).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Seconds a client told to retry should wait: the pool turns over many times a second, so
/// one second is long enough to find it free and short enough not to stall a dashboard.
pub const RETRY_AFTER_SECS: u64 = 1;

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter is malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the admin key is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the route is turned off (no admin key configured).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 408: the request body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// 409: the same operation is already running.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is larger than any route accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 421: the `Host` header names a host this server does not answer for (a DNS-rebinding
    /// page, or a name the operator has not allowed with `--allow-host`).
    #[error("{0}")]
    UnknownHost(String),
    /// 422: well-formed, but the writer refused it (an injected packet a filter drops).
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`: this client already has its share of expensive requests
    /// running.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503 with `Retry-After`: no database connection became free within the wait bound.
    #[error("{0}")]
    Busy(String),
    /// 503: the query took too long.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything else (logged; the client gets a generic message).
    #[error("internal error")]
    Internal(String),
}

impl From<rusqlite_error::Error> for ApiError {
    fn from(e: rusqlite_error::Error) -> Self {
        if let rusqlite_error::Error::SqliteFailure(f, _) = &e
            && f.code == rusqlite_error::ErrorCode::OperationInterrupted
        {
            return ApiError::Unavailable("query took too long".into());
        }
        ApiError::Internal(e.to_string())
    }
}

/// Re-export path for rusqlite's error types.
mod rusqlite_error {
    pub use store::rusqlite::{Error, ErrorCode};
}

impl ApiError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(msg) = &self {
            tracing::error!("internal error: {msg}");
        }
        let retry = matches!(self, ApiError::Busy(_) | ApiError::TooManyRequests(_));
        // The rest of an unread body would be taken for the next request: close instead.
        let close = matches!(self, ApiError::Timeout(_) | ApiError::TooLarge(_));
        let mut res = (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if retry {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if close {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
