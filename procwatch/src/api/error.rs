//! Every error the API answers is JSON: `{"error": "...", "status": N}` with that status.
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: the part that would answer is not there now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl From<crate::engine::ApiRefusal> for ApiError {
    fn from(r: crate::engine::ApiRefusal) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::CONFLICT);
        Self::new(status, r.message)
    }
}

/// The JSON body of an error.
pub fn body(status: StatusCode, message: &str) -> String {
    serde_json::json!({ "error": message, "status": status.as_u16() }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, body(self.status, &self.message)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
