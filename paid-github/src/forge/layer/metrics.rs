//! The metrics layer: what every attempt cost, by endpoint and status.
//!
//! - `paid_github_api_calls_total{endpoint,status}`: one per attempt that
//!   reached GitHub (`status` is the HTTP status; `error` when no answer came).
//!   `endpoint` is a template such as `GET /repos/{owner}/{repo}/issues`, so
//!   the label set stays small; pagination links to `/repositories/{id}/...`
//!   count under the same template.
//! - `paid_github_rate_limit_remaining{token_id}`: `x-ratelimit-remaining`
//!   of the last answer that carried it.
//! - [`ClientStats`]: the same counts for tests and callers without a
//!   registry. A `304 Not Modified` is counted as a request but not as a
//!   rate-limited call: GitHub does not charge for it.

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use paid_core::metrics::{GitHubCallLabels, Metrics, TokenIdLabels};

use super::{Call, Transport};
use crate::error::Result;
use crate::forge::client::{Reply, error_from, lock};
use crate::forge::{ClientStats, RateLimit};

/// What the layers observed, shared between them and the client.
#[derive(Debug)]
pub(crate) struct Observer {
    stats: Mutex<ClientStats>,
    rate: Mutex<Option<RateLimit>>,
    metrics: Option<Arc<Metrics>>,
    token_id: String,
}

impl Observer {
    pub fn new(metrics: Option<Arc<Metrics>>, token_id: String) -> Self {
        Self { stats: Mutex::new(ClientStats::default()), rate: Mutex::new(None), metrics, token_id }
    }

    pub fn stats(&self) -> ClientStats {
        *lock(&self.stats)
    }

    pub fn rate_limit(&self) -> Option<RateLimit> {
        lock(&self.rate).clone()
    }

    pub fn update_stats(&self, f: impl FnOnce(&mut ClientStats)) {
        f(&mut lock(&self.stats));
    }

    fn record(&self, call: &Call, result: &Result<Reply>) {
        let status = match result {
            Ok(reply) => reply.status.as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        self.update_stats(|s| {
            s.requests += 1;
            match result {
                Ok(reply) if reply.status == StatusCode::NOT_MODIFIED => s.not_modified += 1,
                Ok(reply) => {
                    s.rate_limited_calls += 1;
                    if !reply.status.is_success() && matches!(error_from("", reply), crate::Error::RateLimited { .. }) {
                        s.rate_limit_hits += 1;
                    }
                }
                Err(_) => s.failed += 1,
            }
        });
        if let Ok(reply) = result
            && let Some(rate) = RateLimit::from_headers(&reply.headers)
        {
            if let Some(m) = &self.metrics {
                let remaining = i64::try_from(rate.remaining).unwrap_or(i64::MAX);
                m.github_rate_limit_remaining
                    .get_or_create(&TokenIdLabels { token_id: self.token_id.clone() })
                    .set(remaining);
            }
            *lock(&self.rate) = Some(rate);
        }
        if let Some(m) = &self.metrics {
            m.github_api_calls_total
                .get_or_create(&GitHubCallLabels { endpoint: endpoint(&call.method, &call.uri), status })
                .inc();
        }
    }
}

/// Records every attempt that passes through it.
#[derive(Debug)]
pub(crate) struct MetricsLayer<T> {
    inner: T,
    observer: Arc<Observer>,
}

impl<T> MetricsLayer<T> {
    pub fn new(inner: T, observer: Arc<Observer>) -> Self {
        Self { inner, observer }
    }
}

impl<T: Transport> Transport for MetricsLayer<T> {
    async fn send(&self, call: &Call) -> Result<Reply> {
        let result = self.inner.send(call).await;
        self.observer.record(call, &result);
        result
    }
}

/// The endpoint template of a request, e.g. `GET /repos/{owner}/{repo}/issues/{number}`.
pub(crate) fn endpoint(method: &Method, uri: &str) -> String {
    let path = uri.split('?').next().unwrap_or(uri);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out: Vec<String> = Vec::with_capacity(segs.len());
    let rest: &[&str] = match segs.as_slice() {
        ["repos", _, _, rest @ ..] | ["repositories", _, rest @ ..] => {
            out.extend(["repos", "{owner}", "{repo}"].map(String::from));
            rest
        }
        other => other,
    };
    let mut prev = "";
    for seg in rest {
        let templated = match prev {
            "issues" | "pulls" if seg.parse::<u64>().is_ok() => "{number}",
            "comments" | "reviews" | "check-runs" | "hooks" if seg.parse::<u64>().is_ok() => "{id}",
            "labels" => "{name}",
            "commits" | "statuses" | "status" => "{ref}",
            _ => seg,
        };
        out.push(templated.to_string());
        prev = seg;
    }
    format!("{method} /{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_templates() {
        let e = |m: Method, u: &str| endpoint(&m, u);
        assert_eq!(e(Method::GET, "/repos/octo/app/issues?state=open&page=2"), "GET /repos/{owner}/{repo}/issues");
        assert_eq!(e(Method::GET, "/repositories/1001/issues?page=3"), "GET /repos/{owner}/{repo}/issues");
        assert_eq!(
            e(Method::PATCH, "/repos/o/r/issues/comments/77"),
            "PATCH /repos/{owner}/{repo}/issues/comments/{id}"
        );
        assert_eq!(
            e(Method::DELETE, "/repos/o/r/issues/3/labels/good%20first%20issue"),
            "DELETE /repos/{owner}/{repo}/issues/{number}/labels/{name}"
        );
        assert_eq!(
            e(Method::GET, "/repos/o/r/commits/abc123/check-runs"),
            "GET /repos/{owner}/{repo}/commits/{ref}/check-runs"
        );
        assert_eq!(e(Method::GET, "/user"), "GET /user");
    }
}
