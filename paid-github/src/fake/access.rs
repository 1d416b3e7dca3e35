//! Who may do what on the fake, and its failures: the token check (`401`),
//! the `x-oauth-scopes` header of a classic token, `GET /user`,
//! `GET /repos/{o}/{r}` with the token's `permissions`, and injected faults.
//!
//! GitHub sends `x-oauth-scopes` (`repo, workflow`, comma and space
//! separated) with every answer to a request made with a classic token, as
//! in each recorded session in `fixtures/github/`; fine-grained and app
//! tokens get none, and neither does a `401`.

use http::{HeaderMap, StatusCode, header};

use super::routes::{DOCS, Reply};
use super::state::{FakeFault, State};
use super::templates::{self, Ctx};

/// `None` when the request may go on, else GitHub's `401`.
pub(super) fn authenticate(st: &State, headers: &HeaderMap) -> Option<Reply> {
    let token = st.token.as_ref()?;
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ok = given.strip_prefix("Bearer ").or_else(|| given.strip_prefix("token ")) == Some(token.as_str());
    if ok {
        return None;
    }
    let message = if given.is_empty() { "Requires authentication" } else { "Bad credentials" };
    Some(Reply::json(StatusCode::UNAUTHORIZED, templates::message(message, DOCS)))
}

/// The `x-oauth-scopes` value for an answer with `status` to a request
/// with `headers`, when the fake plays a classic token.
pub(super) fn scopes_header(st: &State, headers: &HeaderMap, status: StatusCode) -> Option<String> {
    let scopes = st.scopes.as_ref()?;
    (status != StatusCode::UNAUTHORIZED && headers.contains_key(header::AUTHORIZATION)).then(|| scopes.join(", "))
}

/// `GET /user`: the authenticated user.
pub(super) fn user(st: &State) -> Reply {
    Reply::ok(templates::user(
        &st.base_url,
        &st.login,
        st.user_ids.get(&st.login.to_ascii_lowercase()).copied().unwrap_or_else(|| templates::user_id(&st.login)),
    ))
}

/// `GET /repos/{o}/{r}`, with the token's permissions on it.
pub(super) fn repository(st: &State, o: &str, n: &str) -> Reply {
    match st.repo(o, n) {
        Some(repo) => Reply::ok(templates::repository(&Ctx { base: &st.base_url, repo, users: &st.user_ids })),
        None => Reply::not_found(),
    }
}

/// The answer of an injected fault.
pub(super) fn fault_reply(st: &State, fault: FakeFault) -> Reply {
    match fault {
        FakeFault::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = Reply::json(status, templates::message(status.canonical_reason().unwrap_or("Error"), DOCS));
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN {
                r.headers.push(("retry-after", "1".into()));
            }
            r
        }
        FakeFault::SecondaryRateLimit { retry_after } => {
            let mut r = Reply::json(
                StatusCode::FORBIDDEN,
                templates::message(
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. \
                     If you reach out to GitHub Support for help, please include the request ID FAKE.",
                    "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                ),
            );
            r.headers.push(("retry-after", retry_after.to_string()));
            r
        }
        FakeFault::PrimaryRateLimit { reset_in } => {
            let mut r = Reply::json(
                StatusCode::FORBIDDEN,
                templates::message(
                    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please \
                     include the request ID FAKE.",
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                ),
            );
            let reset = chrono::Utc::now().timestamp() + i64::try_from(reset_in).unwrap_or(i64::MAX / 2);
            r.headers.push(("x-ratelimit-remaining", "0".into()));
            r.headers.push(("x-ratelimit-used", st.rate_limit.to_string()));
            r.headers.push(("x-ratelimit-reset", reset.to_string()));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn repositories_have_the_recorded_keys_and_the_tokens_permissions() {
        let mut st = State::new("http://127.0.0.1:9".into(), None, "paid-bot".into());
        st.add_issue("o", "r", 1, "Bug", "", "alice", &[], chrono::Utc::now());
        let recorded: Vec<Value> =
            serde_json::from_str(include_str!("../../fixtures/github/get-repository.json")).unwrap_or_default();
        let recorded = &recorded[0]["response"];

        let repo = repository(&st, "o", "r").body.unwrap_or_default();
        assert_eq!(keys(&repo), keys(recorded));
        assert_eq!(keys(&repo["owner"]), keys(&recorded["owner"]));
        assert_eq!(repo["full_name"], "o/r");
        assert_eq!(repo["url"], "http://127.0.0.1:9/repos/o/r");
        assert_eq!(repo["open_issues_count"], 1);
        assert_eq!(repo["permissions"]["push"], true);

        st.repo_mut("o", "r").push = false;
        let repo = repository(&st, "o", "r").body.unwrap_or_default();
        assert_eq!(
            repo["permissions"],
            serde_json::json!({"admin": false, "maintain": false, "push": false, "triage": true, "pull": true})
        );
        assert_eq!(repository(&st, "o", "missing").status, StatusCode::NOT_FOUND);
    }
}
