//! The request path: authenticate, allowlist, cap, forward with the real
//! key, stream or buffer the answer, meter and record it.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use paid_core::{Usage, UsageRecord};
use secrecy::ExposeSecret;

use super::auth::{CREDENTIAL_HEADERS, Grant, presented_token};
use super::budget::{Breach, BudgetEvent, Refusal, Reservation, WorstCase};
use super::limits::Busy;
use super::request::Plan;
use super::sse::{StreamEnd, tap};
use super::{Shared, Upstream};
use crate::providers::{ProviderKind, anthropic, gemini, openai};
use crate::usage::{Metered, from_body};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that pick which organization or project a key bills to: the
/// operator decides that, not the sandbox.
const BILLING_SELECTORS: [&str; 3] = ["openai-organization", "openai-project", "x-goog-user-project"];

/// What an allowlisted path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Whether responses carry usage to meter and budgets apply.
    pub metered: bool,
}

/// The allowlist: the only method and paths forwarded for each kind.
///
/// - Anthropic: `POST /v1/messages`, `POST /v1/messages/count_tokens`;
/// - OpenAI and compatible: `POST /v1/chat/completions`;
/// - Gemini: `POST /v1beta/models/{model}:generateContent`,
///   `:streamGenerateContent`, `:countTokens` (also under `/v1/`).
pub(crate) fn allowlisted(kind: ProviderKind, method: &Method, path: &str) -> Option<Endpoint> {
    if method != Method::POST || path.contains("..") || path.contains('%') || path.contains("//") {
        return None;
    }
    let metered = Endpoint { metered: true };
    let free = Endpoint { metered: false };
    match kind {
        ProviderKind::Anthropic => match path {
            anthropic::MESSAGES_PATH => Some(metered),
            "/v1/messages/count_tokens" => Some(free),
            _ => None,
        },
        ProviderKind::OpenAi | ProviderKind::Compatible => (path == openai::CHAT_PATH).then_some(metered),
        ProviderKind::Gemini => {
            let model = gemini::model_from_path(path)?;
            let valid = model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            let action = path.rsplit_once(':').map(|(_, a)| a)?;
            match action {
                "generateContent" | "streamGenerateContent" if valid => Some(metered),
                "countTokens" if valid => Some(free),
                _ => None,
            }
        }
    }
}

/// An error answer in `kind`'s own error format.
pub(crate) fn refusal(kind: Option<ProviderKind>, status: StatusCode, message: &str) -> Response {
    let code = status.as_u16();
    let body = match kind {
        Some(ProviderKind::Anthropic) => anthropic::error_body(code, message),
        Some(ProviderKind::Gemini) => gemini::error_body(code, message),
        Some(ProviderKind::OpenAi | ProviderKind::Compatible) | None => openai::error_body(code, message),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN {
        // The official SDKs retry 429s unless told not to; a spent budget
        // does not come back by retrying.
        resp.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
    }
    resp
}

fn budget_message(b: &Breach) -> String {
    format!(
        "Paid budget exceeded for this run ({b}); the run is stopped. Raise the cap in the proxy configuration to continue."
    )
}

/// A request turned away because too many are in flight: a 429 (per run)
/// or 503 (the proxy) that the SDKs retry after a second.
fn busy_refusal(kind: ProviderKind, busy: Busy) -> Response {
    let status = match busy {
        Busy::Run { .. } => StatusCode::TOO_MANY_REQUESTS,
        Busy::Proxy { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut resp = refusal(Some(kind), status, &busy.to_string());
    let headers = resp.headers_mut();
    headers.remove("x-should-retry");
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn no_room_message(refused: &Refusal) -> String {
    format!(
        "Paid budget: {refused}. Lower max_tokens or shorten the request, or wait for requests in flight to finish."
    )
}

/// What a metered request is charged when it is recorded.
pub(crate) enum Charge {
    /// Nothing: it was refused before it was sent.
    Nothing,
    /// Nothing, and its hold is released: the upstream billed nothing (it
    /// was unreachable, redirected, or answered an error).
    Release(Option<Reservation>),
    /// Its reported usage, or its worst case when it reported none.
    Usage(Option<Reservation>),
    /// Its worst case, whatever it reported: it was cut short.
    Worst(Option<Reservation>),
}

/// The handler for every path but `/health`.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: http::Request<Body>) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let Some((name, rest)) = path.strip_prefix('/').map(|p| p.split_once('/').unwrap_or((p, ""))) else {
        return refusal(None, StatusCode::NOT_FOUND, "unknown path");
    };
    let Some(upstream) = shared.upstreams.get(name) else {
        return refusal(None, StatusCode::NOT_FOUND, &format!("no upstream named {name:?} is configured"));
    };
    let kind = upstream.kind;
    let rest = format!("/{rest}");
    let query = parts.uri.query();

    // Authenticate the run.
    let now = shared.clock.now();
    let Some(token) = presented_token(&parts.headers, query) else {
        return refusal(Some(kind), StatusCode::UNAUTHORIZED, "missing API key: present the run token as the API key");
    };
    let Some(grant) = shared.tokens.check(token, now) else {
        return refusal(Some(kind), StatusCode::UNAUTHORIZED, "invalid API key: unknown, revoked or expired run token");
    };
    if shared.config.check_run_state {
        match shared.store.run(grant.run_id).await {
            Ok(run) if !run.state.is_terminal() => {}
            Ok(_) | Err(paid_core::Error::NotFound { .. }) => {
                shared.tokens.revoke(grant.run_id);
                return refusal(Some(kind), StatusCode::UNAUTHORIZED, "invalid API key: the run has ended");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot check run state; refusing");
                return refusal(Some(kind), StatusCode::SERVICE_UNAVAILABLE, "the proxy cannot check the run");
            }
        }
    }

    // Only allowlisted endpoints.
    let Some(endpoint) = allowlisted(kind, &parts.method, &rest) else {
        return refusal(
            Some(kind),
            StatusCode::NOT_FOUND,
            &format!("{} {rest} is not available through this proxy", parts.method),
        );
    };

    // At most so many requests in flight, per run and in all.
    let admitted = match shared.in_flight.admit(grant.run_id) {
        Ok(admitted) => admitted,
        Err(busy) => return busy_refusal(kind, busy),
    };

    // Read the body, capped.
    let cap = shared.config.max_body_bytes;
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return refusal(Some(kind), StatusCode::PAYLOAD_TOO_LARGE, &format!("request body over {cap} bytes"));
    }
    let body = match axum::body::to_bytes(body, cap).await {
        Ok(b) => b,
        Err(_) => return refusal(Some(kind), StatusCode::PAYLOAD_TOO_LARGE, &format!("request body over {cap} bytes")),
    };

    let mut plan = match Plan::read(kind, &rest, body) {
        Ok(plan) => plan,
        Err(message) => return refusal(Some(kind), StatusCode::BAD_REQUEST, &message),
    };

    // The model reaches metric labels, usage rows and logs: a priced model,
    // or a bounded name (`paid_core::validate_model_name`), else nothing is
    // forwarded or recorded.
    if let Some(model) = plan.model.as_deref()
        && shared.price_of(upstream, model).is_none()
        && let Err(paid_core::Error::InvalidInput { message, .. }) = paid_core::validate_model_name(model)
    {
        tracing::warn!(upstream = %upstream.name, "refused a request naming an invalid model");
        return refusal(Some(kind), StatusCode::BAD_REQUEST, &message);
    }

    let mut hold = None;
    if endpoint.metered {
        let price = plan.model.as_deref().and_then(|m| shared.price_of(upstream, m));
        if shared.budgets.config_for(grant.project_id).refuse_unpriced
            && shared.budgets.has_cost_cap(&grant)
            && price.is_none()
        {
            let model = plan.model.as_deref().unwrap_or("");
            return refusal(
                Some(kind),
                StatusCode::FORBIDDEN,
                &format!("model {model:?} has no price, so its cost cannot be capped; add it to the price file"),
            );
        }
        // A request for a priced model without an output cap gets one (the
        // model's maximum, or the default), so that its reservation bounds
        // what it can cost. (An unpriced model costs nothing to reserve, and
        // a small self-hosted one may refuse a cap over its context.)
        let cap = price.and_then(|p| p.max_output).unwrap_or(super::reservation::DEFAULT_MAX_OUTPUT_TOKENS);
        if price.is_some()
            && let Err(message) = plan.ensure_output_cap(cap)
        {
            return refusal(Some(kind), StatusCode::BAD_REQUEST, &message);
        }
        let max_output = plan.max_output.unwrap_or(cap);
        let worst = WorstCase::of_request(plan.body.len(), max_output, price.and_then(|p| p.price_at(now)));
        match shared.budgets.reserve(&grant, worst, now).await {
            Ok(reservation) => hold = Some(reservation),
            Err(refused) => {
                let (status, message) = match &refused {
                    Refusal::Reached(breach, event) => {
                        if let Some(event) = event {
                            shared.report(vec![event.clone()]);
                        }
                        ("budget_exceeded", budget_message(breach))
                    }
                    Refusal::NoRoom { .. } => ("budget_no_room", no_room_message(&refused)),
                };
                let model = plan.model.clone().unwrap_or_default();
                shared.record(&grant, upstream, &model, None, status, started, Charge::Nothing);
                return refusal(Some(kind), StatusCode::TOO_MANY_REQUESTS, &message);
            }
        }
    }
    if let Err(message) = plan.ensure_stream_usage() {
        return refusal(Some(kind), StatusCode::BAD_REQUEST, &message);
    }

    // Forward with the real key.
    let url = match forward_query(query) {
        Some(q) => format!("{}{rest}?{q}", upstream.base_url),
        None => format!("{}{rest}", upstream.base_url),
    };
    let mut headers = outgoing_headers(&parts.headers);
    inject_key(upstream, &mut headers);
    if let Some(hold) = &mut hold {
        // From here the upstream may bill: a request dropped unsettled (its
        // client left) costs its worst case.
        hold.mark_sent();
    }
    let sent = shared
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(plan.body.clone())
        .timeout(shared.config.upstream_timeout)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(upstream = %upstream.name, error = %e.without_url(), "upstream unreachable");
            if endpoint.metered {
                shared.record(
                    &grant,
                    upstream,
                    plan.model.as_deref().unwrap_or(""),
                    None,
                    "upstream_unreachable",
                    started,
                    Charge::Release(hold),
                );
            }
            return refusal(Some(kind), StatusCode::BAD_GATEWAY, &format!("upstream {} is unreachable", upstream.name));
        }
    };

    let status = resp.status();
    // The client follows no redirects (they would carry the key elsewhere),
    // and a redirect is not handed on to the caller either: its SDK would
    // follow it past the proxy.
    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
        tracing::warn!(upstream = %upstream.name, status = status.as_u16(), "upstream answered with a redirect; not followed");
        if endpoint.metered {
            shared.record(
                &grant,
                upstream,
                plan.model.as_deref().unwrap_or(""),
                None,
                "upstream_redirect",
                started,
                Charge::Release(hold),
            );
        }
        return refusal(
            Some(kind),
            StatusCode::BAD_GATEWAY,
            &format!(
                "upstream {} answered {} (a redirect); the proxy never follows redirects, since they would carry \
                 the API key elsewhere: check the upstream's base_url",
                upstream.name,
                status.as_u16()
            ),
        );
    }
    let mut out_headers = incoming_headers(resp.headers());
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));

    if is_sse && status.is_success() {
        out_headers.remove(header::CONTENT_LENGTH);
        let shared2 = shared.clone();
        let upstream2 = upstream.clone();
        let model = plan.model.clone();
        let metered = endpoint.metered;
        let guard = shared.pending.guard();
        let stream = tap(kind, resp.bytes_stream().boxed(), move |m: Metered, end: StreamEnd| {
            let _guard = guard;
            // In flight until the stream ends.
            let _admitted = admitted;
            if metered {
                let model = acceptable(&shared2, &upstream2, m.model.clone()).or(model).unwrap_or_default();
                // A stream cut short (by the client or the upstream) may be
                // billed beyond the usage seen so far: it costs its worst case.
                let charge = if end == StreamEnd::Complete { Charge::Usage(hold) } else { Charge::Worst(hold) };
                shared2.record(&grant, &upstream2, &model, m.usage, end.status(), started, charge);
            }
        });
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        return response;
    }

    let bytes = match read_capped(resp, shared.config.max_response_bytes).await {
        Ok(b) => b,
        Err(msg) => {
            if endpoint.metered {
                shared.record(
                    &grant,
                    upstream,
                    plan.model.as_deref().unwrap_or(""),
                    None,
                    "upstream_broke",
                    started,
                    Charge::Worst(hold),
                );
            }
            return refusal(Some(kind), StatusCode::BAD_GATEWAY, &msg);
        }
    };
    if endpoint.metered {
        let m = if status.is_success() { from_body(kind, &bytes) } else { Metered::default() };
        let model = acceptable(&shared, upstream, m.model).or(plan.model).unwrap_or_default();
        // An error answer is not billed; a success without usage costs its worst case.
        let charge = if status.is_success() { Charge::Usage(hold) } else { Charge::Release(hold) };
        shared.record(&grant, upstream, &model, m.usage, status.as_str(), started, charge);
    }
    out_headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

/// The model an upstream's answer names, if it passes the request's check
/// (priced, or a valid name); otherwise the request's model is recorded.
fn acceptable(shared: &Shared, upstream: &Upstream, model: Option<String>) -> Option<String> {
    model.filter(|m| paid_core::is_valid_model_name(m) || shared.price_of(upstream, m).is_some())
}

async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Bytes, String> {
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("upstream response broke: {}", e.without_url()))?;
        if buf.len() + chunk.len() > cap {
            return Err(format!("upstream response over {cap} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Drops the `key` parameter (a Gemini credential) from a query string.
fn forward_query(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?.split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("key=")).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

/// The client's headers minus hop-by-hop ones, host, length, credentials,
/// billing selectors and compression (responses must stay readable to be
/// metered).
fn outgoing_headers(incoming: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || CREDENTIAL_HEADERS.contains(&n)
            || listed.iter().any(|l| l == n)
            || BILLING_SELECTORS.contains(&n)
            || matches!(n, "host" | "content-length" | "accept-encoding" | "cookie" | "forwarded")
            || n.starts_with("x-forwarded-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    out
}

/// The upstream's headers minus hop-by-hop ones.
fn incoming_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || listed.iter().any(|l| l == n) || n == "set-cookie" {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Puts the real key where `upstream`'s kind expects it.
fn inject_key(upstream: &Upstream, headers: &mut HeaderMap) {
    let Some(key) = &upstream.api_key else { return };
    let secret = key.expose_secret();
    let (name, value) = match upstream.kind {
        ProviderKind::Anthropic => (HeaderName::from_static(anthropic::KEY_HEADER), HeaderValue::from_str(secret)),
        ProviderKind::Gemini => (HeaderName::from_static(gemini::KEY_HEADER), HeaderValue::from_str(secret)),
        ProviderKind::OpenAi | ProviderKind::Compatible => {
            (header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {secret}")))
        }
    };
    match value {
        Ok(mut v) => {
            v.set_sensitive(true);
            headers.insert(name, v);
        }
        Err(_) => tracing::error!(upstream = %upstream.name, "the configured API key is not a valid header value"),
    }
}

impl Shared {
    /// Reports budget events to the observer, off the request path.
    pub(crate) fn report(&self, events: Vec<BudgetEvent>) {
        if events.is_empty() {
            return;
        }
        let observer = self.observer.clone();
        self.pending.spawn(async move {
            for e in &events {
                tracing::warn!(run_id = %e.run_id, cap = %e.breach.cap, kind = ?e.kind, spent = e.breach.spent, limit = e.breach.limit, "budget event");
                observer.on_budget_event(e).await;
            }
        });
    }

    /// The price entry for `model` on `upstream` (by its name, then its kind).
    pub(crate) fn price_of(&self, upstream: &Upstream, model: &str) -> Option<&crate::prices::ModelInfo> {
        self.prices.model(&upstream.name, model).or_else(|| self.prices.model(upstream.kind.as_str(), model))
    }

    /// Charges the budgets as `charge` says, counts metrics and writes the
    /// usage record (with the cost charged).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        grant: &Grant,
        upstream: &Upstream,
        model: &str,
        usage: Option<Usage>,
        status: &str,
        started: Instant,
        charge: Charge,
    ) {
        let at = self.clock.now();
        let latency = started.elapsed();
        let priced = usage.as_ref().and_then(|u| {
            let info = self.price_of(upstream, model)?;
            Some(info.price_at(at)?.cost_micros(u))
        });
        let at_worst = |hold: Reservation| {
            let held = hold.held();
            (Some(held.cost_micros), hold.settle_at_worst(at))
        };
        let (cost, events) = match (charge, &usage) {
            (Charge::Nothing, _) => (priced, Vec::new()),
            (Charge::Release(hold), _) => {
                drop(hold);
                (priced, Vec::new())
            }
            (Charge::Usage(Some(hold)), Some(u)) => (priced, hold.settle(u.total(), priced, at)),
            (Charge::Usage(Some(hold)), None) | (Charge::Worst(Some(hold)), _) => at_worst(hold),
            (Charge::Usage(None) | Charge::Worst(None), _) => {
                (priced, self.budgets.charge(grant, usage.as_ref().map_or(0, Usage::total), priced, at))
            }
        };
        let usage = usage.unwrap_or_default();
        self.report(events);
        self.metrics.record_request(&upstream.name, model, latency);
        self.metrics.record_usage(&grant.project_id.to_string(), model, &usage, cost);
        tracing::info!(
            run_id = %grant.run_id,
            project_id = %grant.project_id,
            upstream = %upstream.name,
            model,
            status,
            latency_ms = latency.as_millis() as u64,
            tokens = usage.total(),
            cost_micros = cost,
            "proxied LLM request"
        );
        let record = UsageRecord {
            run_id: grant.run_id,
            provider: upstream.name.clone(),
            model: model.to_string(),
            usage,
            cost_micros: cost,
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            status: status.to_string(),
            at,
        };
        let store = self.store.clone();
        self.pending.spawn(async move {
            if let Err(e) = store.record_usage(&record).await {
                tracing::error!(error = %e, run_id = %record.run_id, "cannot record LLM usage");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist() {
        let post = Method::POST;
        assert!(allowlisted(ProviderKind::Anthropic, &post, "/v1/messages").is_some());
        assert!(allowlisted(ProviderKind::Anthropic, &Method::GET, "/v1/messages").is_none());
        assert!(allowlisted(ProviderKind::Anthropic, &post, "/v1/files").is_none());
        assert!(allowlisted(ProviderKind::OpenAi, &post, "/v1/chat/completions").is_some());
        assert!(allowlisted(ProviderKind::OpenAi, &post, "/v1/embeddings").is_none());
        assert!(
            allowlisted(ProviderKind::Gemini, &post, "/v1beta/models/gemini-2.5-pro:streamGenerateContent").is_some()
        );
        assert!(allowlisted(ProviderKind::Gemini, &post, "/v1beta/models/..:generateContent").is_none());
        assert!(allowlisted(ProviderKind::Gemini, &post, "/v1beta/models/x:deleteEverything").is_none());
    }

    #[test]
    fn credentials_and_hop_by_hop_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer paid-x".parse().unwrap());
        h.insert("x-api-key", "paid-x".parse().unwrap());
        h.insert("connection", "keep-alive, x-custom".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        h.insert("accept-encoding", "gzip".parse().unwrap());
        h.insert("openai-organization", "org-elsewhere".parse().unwrap());
        let out = outgoing_headers(&h);
        assert_eq!(out.len(), 2);
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert_eq!(out["accept-encoding"], "identity");
    }

    #[test]
    fn gemini_key_is_dropped_from_the_query() {
        assert_eq!(forward_query(Some("alt=sse&key=paid-x")), Some("alt=sse".to_string()));
        assert_eq!(forward_query(Some("key=paid-x")), None);
    }
}
