//! The one error shape, the success envelope and JSON bodies.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paid_api::{Envelope, ErrorBody, ErrorEnvelope, Meta};
use paid_core::Error as CoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::vault::VaultError;

tokio::task_local! {
    pub(crate) static REQUEST_ID: String;
}

pub(crate) fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// An error in the one shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    /// An error with `status`, a machine `code` and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: json!({}) }
    }

    pub(crate) fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody { code: self.code.to_string(), message: self.message, details: self.details },
            meta: Meta { request_id: Some(request_id()), ..Meta::default() },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let (status, code) = match &e {
            CoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            CoreError::AlreadyExists { .. } => (StatusCode::CONFLICT, "conflict"),
            CoreError::IllegalTransition { .. } => (StatusCode::CONFLICT, "conflict"),
            CoreError::Untrusted { .. } => (StatusCode::FORBIDDEN, "untrusted_author"),
            CoreError::InvalidInput { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            CoreError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Unsupported(_) => ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported", e.to_string()),
            VaultError::NoKey => ApiError::new(StatusCode::CONFLICT, "no_master_key", e.to_string()),
            VaultError::BadName(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()),
            VaultError::Crypto(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decryption_failed", e.to_string())
            }
            VaultError::Store(e) => e.into(),
            VaultError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        }
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// A success envelope.
pub(crate) fn ok<T: Serialize>(status: StatusCode, data: T) -> ApiResult {
    let meta = Meta { request_id: Some(request_id()), timestamp: Some(chrono::Utc::now()), next_cursor: None };
    Ok((status, Json(Envelope { data, meta })).into_response())
}

/// A page of a list: `meta.next_cursor` leads to the next.
pub(crate) fn ok_page<T: Serialize>(items: Vec<T>, next_cursor: Option<String>) -> ApiResult {
    let meta = Meta { request_id: Some(request_id()), timestamp: Some(chrono::Utc::now()), next_cursor };
    Ok((StatusCode::OK, Json(Envelope { data: items, meta })).into_response())
}

/// JSON bodies, with rejections (too large, malformed) in the error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(status, "payload_too_large", "the request body is larger than this API accepts");
    }
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
        _ => "bad_request",
    };
    ApiError::new(status, code, r.body_text())
}
