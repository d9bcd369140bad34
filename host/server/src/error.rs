//! Errors → HTTP. Only this crate picks status codes; 4xx are the caller's and are not
//! logged as errors; a 5xx answers with a generic body and logs the detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use skewless_core::Fault;

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The message for the caller (4xx) or the log (5xx).
    pub message: String,
    /// Fields a 4xx body carries beside `error`, for tools (such as `problems`).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// A 400 naming what is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the request is fine, but the server's state cannot answer it yet.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 422: the request was understood, but what it names cannot be processed.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// A 500; the message is logged, not sent.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    /// Adds the field `name` to a 4xx body (a 5xx body stays generic).
    pub fn with(mut self, name: &str, value: serde_json::Value) -> Self {
        self.details.insert(name.to_owned(), value);
        self
    }
}

impl ApiError {
    /// The one mapping from who is at fault to a status: `caller` is the 4xx this kind of
    /// refusal gets (400, 404, 409, 422); a guest's fault is a 422, a broken invariant or
    /// a failed disk a 500 (the detail logged, never sent), an unreachable dependency or a
    /// concurrent change a 503 (retry).
    pub fn of(fault: Fault, caller: StatusCode, message: impl Into<String>) -> Self {
        let status = match fault {
            Fault::Caller => caller,
            Fault::Guest => StatusCode::UNPROCESSABLE_ENTITY,
            Fault::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, message)
    }
}

impl From<skewless_registry::Error> for ApiError {
    fn from(e: skewless_registry::Error) -> Self {
        use skewless_registry::Error as E;
        let caller = match &e {
            E::Conflict { .. } => StatusCode::CONFLICT,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::of(e.fault(), caller, e.to_string())
    }
}

impl From<skewless_online::Error> for ApiError {
    fn from(e: skewless_online::Error) -> Self {
        Self::of(e.fault(), StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<skewless_plan::Error> for ApiError {
    fn from(e: skewless_plan::Error) -> Self {
        let caller = match &e {
            skewless_plan::Error::UnknownService(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::of(e.fault(), caller, e.to_string())
    }
}

impl From<skewless_ops::NoDefinitions> for ApiError {
    fn from(e: skewless_ops::NoDefinitions) -> Self {
        Self::not_found(e.to_string())
    }
}

impl From<skewless_ops::ServingError> for ApiError {
    fn from(e: skewless_ops::ServingError) -> Self {
        match e {
            skewless_ops::ServingError::NoDefinitions(e) => e.into(),
            skewless_ops::ServingError::Plan(e) => e.into(),
            other => Self::of(other.fault(), StatusCode::BAD_REQUEST, other.to_string()),
        }
    }
}

impl From<skewless_ops::ApplyError> for ApiError {
    fn from(e: skewless_ops::ApplyError) -> Self {
        use skewless_ops::ApplyError as E;
        match e {
            // The text for people, and each problem with its path and line for tools.
            E::Definitions(problems) => Self::unprocessable(problems.to_string())
                .with("problems", serde_json::json!(problems.problems)),
            E::Registry(e) => e.into(),
            E::Plan(e) => e.into(),
            E::Store(e) => e.into(),
            other => Self::of(other.fault(), StatusCode::BAD_REQUEST, other.to_string()),
        }
    }
}

impl From<skewless_ops::MaterializeError> for ApiError {
    fn from(e: skewless_ops::MaterializeError) -> Self {
        Self::of(e.fault(), StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl ApiError {
    /// A verification or drift error; `caller` is the status of the caller's fault.
    pub fn ops(caller: StatusCode) -> impl Fn(skewless_ops::Error) -> Self {
        move |e| Self::of(e.fault(), caller, e.to_string())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        Self::new(e.status(), format!("request body: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
            body.insert(
                "error".into(),
                "internal error; the detail is in the server log".into(),
            );
        } else if self.status.is_server_error() {
            // "Try again": the caller may see why (a full disk, an unreachable Redis).
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request refused for now");
            body.insert("error".into(), self.message.into());
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request refused");
            body.insert("error".into(), self.message.into());
            body.extend(self.details);
        }
        (self.status, axum::Json(body)).into_response()
    }
}
