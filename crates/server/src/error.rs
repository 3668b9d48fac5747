//! API errors: `{"error": "..."}` with the right status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter is malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 503: the query took too long or the pool is exhausted.
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(msg) => {
                tracing::error!("internal error: {msg}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
