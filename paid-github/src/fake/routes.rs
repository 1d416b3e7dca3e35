//! The fake's HTTP surface: exactly the endpoints [`crate::GitHubForge`]
//! uses, plus plain-text pages at the `html_url`s it hands out. Issues,
//! comments, labels and sub-issues are here; pull requests and follow-up
//! reads in `pulls.rs`; authentication, `GET /user`, `GET /repos/{o}/{r}`
//! and faults in `access.rs`.
//!
//! Every answer carries GitHub's headers: `x-ratelimit-*` (a `304` does not
//! count), an `etag` on `200` GETs (honoring `If-None-Match`), and a `link`
//! header with `rel="next"`/`"last"`/`"prev"`/`"first"` on lists, pointing
//! at `/repositories/{id}/...` as real GitHub does.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use super::access;
use super::pulls::{
    create_pull, get_pull, list_check_runs, list_pulls, list_reactions, list_review_comments, list_reviews, with_pull,
};
use super::state::{Comment, Issue, LoggedRequest, State, SubIssueSupport, bump};
use super::templates::{self, Ctx};

pub(crate) type Shared = Arc<Mutex<State>>;

pub(super) const DOCS: &str = "https://docs.github.com/rest";
const DEFAULT_PER_PAGE: usize = 30;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// What a handler answers, before the common headers are added.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Option<Value>,
    text: Option<String>,
    pub(super) headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Self {
        Self { status, body: Some(body), text: None, headers: Vec::new() }
    }

    pub(super) fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    pub(super) fn created(body: Value, location: String) -> Self {
        let mut r = Self::json(StatusCode::CREATED, body);
        r.headers.push(("location", location));
        r
    }

    pub(super) fn not_found() -> Self {
        Self::json(StatusCode::NOT_FOUND, templates::message("Not Found", DOCS))
    }

    pub(super) fn invalid(errors: Value, docs: &str) -> Self {
        Self::json(StatusCode::UNPROCESSABLE_ENTITY, templates::validation_error(errors, docs))
    }

    fn text(body: String) -> Self {
        Self { status: StatusCode::OK, body: None, text: Some(body), headers: Vec::new() }
    }
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = lock(&shared);
    let reply = answer(&mut st, &method, &uri, &headers, &body);
    let response = finish(&mut st, &method, &headers, reply);
    st.requests.push(LoggedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        status: response.status().as_u16(),
    });
    response
}

fn answer(st: &mut State, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Reply {
    if let Some(refused) = access::authenticate(st, headers) {
        return refused;
    }
    if let Some(fault) = st.failures.pop_front().or(st.always) {
        return access::fault_reply(st, fault);
    }
    let segs: Vec<String> = uri.path().split('/').skip(1).map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = query_pairs(uri.query().unwrap_or_default());
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let json = json.as_ref();
    if segs.as_slice() == ["user"] && *method == Method::GET {
        return access::user(st);
    }
    // Resolve `/repositories/{id}/...` to the repository's names.
    let (owner, name, rest): (String, String, &[&str]) = match segs.as_slice() {
        ["repos", o, n, rest @ ..] => (o.to_string(), n.to_string(), rest),
        ["repositories", id, rest @ ..] => match id.parse().ok().and_then(|id| st.repo_by_id(id)) {
            Some((o, n)) => (o, n, rest),
            None => return Reply::not_found(),
        },
        [o, n, kind @ ("issues" | "pull"), number] if *method == Method::GET => {
            return page(st, o, n, kind, number);
        }
        _ => return Reply::not_found(),
    };
    if st.repo(&owner, &name).is_none() {
        return Reply::not_found();
    }
    let (o, n) = (owner.as_str(), name.as_str());
    let num = |s: &str| s.parse::<u64>().ok();
    match (method.clone(), rest) {
        (Method::GET, []) => access::repository(st, o, n),
        (Method::GET, ["issues"]) => list_issues(st, o, n, &query),
        (Method::POST, ["issues"]) => create_issue(st, o, n, json),
        (Method::PATCH, ["issues", number]) if num(number).is_some() => {
            with_issue(st, o, n, number, |st, i| edit_issue(st, o, n, i, json))
        }
        (Method::GET, ["issues", number, "sub_issues"]) => {
            with_issue(st, o, n, number, |st, i| list_sub_issues(st, o, n, i, &query))
        }
        (Method::POST, ["issues", number, "sub_issues"]) => {
            with_issue(st, o, n, number, |st, i| add_sub_issue(st, o, n, i, json))
        }
        (Method::GET, ["issues", number, "reactions"]) => {
            with_issue(st, o, n, number, |st, i| list_reactions(st, o, n, i, &query))
        }
        (Method::GET, ["pulls", number, "comments"]) => {
            with_pull(st, o, n, number, |st, i| list_review_comments(st, o, n, i, &query))
        }
        (Method::GET, ["pulls", number, "reviews"]) => {
            with_pull(st, o, n, number, |st, i| list_reviews(st, o, n, i, &query))
        }
        (Method::GET, ["commits", sha, "check-runs"]) => list_check_runs(st, o, n, sha, &query),
        (Method::GET, ["issues", "comments", id]) => match num(id) {
            Some(id) => get_comment(st, o, n, id),
            None => Reply::not_found(),
        },
        (Method::PATCH, ["issues", "comments", id]) => match num(id) {
            Some(id) => edit_comment(st, o, n, id, json),
            None => Reply::not_found(),
        },
        (Method::GET, ["issues", number]) => with_issue(st, o, n, number, |st, i| get_issue(st, o, n, i)),
        (Method::GET, ["issues", number, "comments"]) => {
            with_issue(st, o, n, number, |st, i| list_comments(st, o, n, i, &query))
        }
        (Method::POST, ["issues", number, "comments"]) => {
            with_issue(st, o, n, number, |st, i| create_comment(st, o, n, i, json))
        }
        (Method::GET, ["issues", number, "labels"]) => with_issue(st, o, n, number, |st, i| issue_labels(st, o, n, i)),
        (Method::POST, ["issues", number, "labels"]) => {
            with_issue(st, o, n, number, |st, i| add_labels(st, o, n, i, json))
        }
        (Method::DELETE, ["issues", number, "labels", label]) => {
            with_issue(st, o, n, number, |st, i| remove_label(st, o, n, i, label))
        }
        (Method::GET, ["pulls"]) => list_pulls(st, o, n, &query),
        (Method::POST, ["pulls"]) => create_pull(st, o, n, json),
        (Method::GET, ["pulls", number]) => match num(number) {
            Some(number) if st.repo(o, n).and_then(|r| r.issues.get(&number)).is_some_and(|i| i.pull.is_some()) => {
                get_pull(st, o, n, number)
            }
            _ => Reply::not_found(),
        },
        _ => Reply::not_found(),
    }
}

/// Adds the common headers, the ETag / `304` logic and rate-limit counting.
fn finish(st: &mut State, method: &Method, req: &HeaderMap, reply: Reply) -> Response {
    let mut builder = Response::builder().status(reply.status);
    let (body, etag) = match (&reply.body, &reply.text) {
        (Some(v), _) => {
            let s = v.to_string();
            let etag = (*method == Method::GET && reply.status == StatusCode::OK).then(|| etag(&s));
            (s, etag)
        }
        (None, Some(t)) => (t.clone(), None),
        (None, None) => (String::new(), None),
    };
    let not_modified = etag.as_ref().is_some_and(|e| {
        req.get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| given.split(',').any(|g| g.trim().trim_start_matches("W/") == e.as_str()))
    });
    if !not_modified {
        st.rate_used += 1;
    }
    let remaining = st.rate_limit.saturating_sub(st.rate_used);
    let reset = chrono::Utc::now().timestamp() + 3600;
    let mut headers: Vec<(&str, String)> = vec![
        ("x-github-media-type", "github.v3; format=json".into()),
        ("x-github-request-id", format!("FAKE:{:08X}", st.requests.len())),
        ("x-ratelimit-limit", st.rate_limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-used", st.rate_used.to_string()),
        ("x-ratelimit-resource", "core".into()),
    ];
    if let Some(e) = &etag {
        headers.push(("etag", e.clone()));
    }
    if let Some(scopes) = access::scopes_header(st, req, reply.status) {
        headers.push(("x-oauth-scopes", scopes));
    }
    // The handler's own headers win (e.g. a rate-limit fault's).
    headers.retain(|(name, _)| !reply.headers.iter().any(|(n, _)| n == name));
    headers.extend(reply.headers);
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            builder = builder.header(name, v);
        }
    }
    let body = if not_modified {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        Body::empty()
    } else if reply.text.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        Body::from(body)
    } else if reply.body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
        Body::from(body)
    } else {
        Body::empty()
    };
    builder.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn etag(body: &str) -> String {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    let a = h.finish();
    body.len().hash(&mut h);
    format!("\"{a:016x}{:016x}\"", h.finish())
}

/// Splits a list into the requested page and adds the `link` header.
pub(super) fn paginate(items: Vec<Value>, query: &[(String, String)], link_base: &str) -> Reply {
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let per_page = get("per_page").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PER_PAGE).clamp(1, 100);
    let page = get("page").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let chunk: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut reply = Reply::ok(Value::Array(chunk));
    let link = |p: usize, rel: &str| {
        let mut params: Vec<String> =
            query.iter().filter(|(k, _)| k != "page").map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        params.push(format!("page={p}"));
        format!("<{link_base}?{}>; rel=\"{rel}\"", params.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    if !links.is_empty() {
        reply.headers.push(("link", links.join(", ")));
    }
    reply
}

fn with_issue(st: &mut State, o: &str, n: &str, number: &str, f: impl FnOnce(&mut State, u64) -> Reply) -> Reply {
    match number.parse::<u64>() {
        Ok(number) if st.repo(o, n).is_some_and(|r| r.issues.contains_key(&number)) => f(st, number),
        _ => Reply::not_found(),
    }
}

pub(super) fn ctx_issue_json(st: &State, o: &str, n: &str, issue: &Issue, single: bool) -> Value {
    match st.repo(o, n) {
        Some(repo) => {
            let comments = repo.comments.iter().filter(|c| c.issue == issue.number).count();
            templates::issue(&Ctx { base: &st.base_url, repo, users: &st.user_ids }, issue, comments, single)
        }
        None => Value::Null,
    }
}

fn list_issues(st: &mut State, o: &str, n: &str, query: &[(String, String)]) -> Reply {
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let state = get("state").unwrap_or_else(|| "open".into());
    let wanted: Vec<String> = get("labels")
        .map(|l| l.split(',').map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let since = get("since").and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.to_utc());
    let creator = get("creator");
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let items: Vec<Value> = repo
        .issues
        .values()
        .rev()
        .filter(|i| match state.as_str() {
            "all" => true,
            "closed" => !i.open,
            _ => i.open,
        })
        // A comma-separated list means issues carrying *all* of them.
        .filter(|i| wanted.iter().all(|w| i.labels.iter().any(|l| l.to_lowercase() == *w)))
        .filter(|i| since.is_none_or(|s| i.updated_at >= s))
        .filter(|i| creator.as_deref().is_none_or(|c| i.author.eq_ignore_ascii_case(c)))
        .map(|i| ctx_issue_json(st, o, n, i, false))
        .collect();
    let link_base = format!("{}/repositories/{}/issues", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

fn get_issue(st: &mut State, o: &str, n: &str, number: u64) -> Reply {
    match st.repo(o, n).and_then(|r| r.issues.get(&number)) {
        Some(i) => Reply::ok(ctx_issue_json(st, o, n, i, true)),
        None => Reply::not_found(),
    }
}

fn comment_json(st: &State, o: &str, n: &str, c: &Comment) -> Value {
    match st.repo(o, n) {
        Some(repo) => templates::comment(&Ctx { base: &st.base_url, repo, users: &st.user_ids }, c),
        None => Value::Null,
    }
}

fn list_comments(st: &mut State, o: &str, n: &str, number: u64, query: &[(String, String)]) -> Reply {
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let items: Vec<Value> =
        repo.comments.iter().filter(|c| c.issue == number).map(|c| comment_json(st, o, n, c)).collect();
    let link_base = format!("{}/repositories/{}/issues/{number}/comments", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

fn get_comment(st: &mut State, o: &str, n: &str, id: u64) -> Reply {
    match st.repo(o, n).and_then(|r| r.comments.iter().find(|c| c.id == id)) {
        Some(c) => Reply::ok(comment_json(st, o, n, c)),
        None => Reply::not_found(),
    }
}

const COMMENT_DOCS: &str = "https://docs.github.com/rest/issues/comments";

pub(super) fn body_field(json: Option<&Value>) -> Option<String> {
    json?.get("body")?.as_str().map(str::to_string)
}

fn create_comment(st: &mut State, o: &str, n: &str, number: u64, json: Option<&Value>) -> Reply {
    let Some(body) = body_field(json) else {
        return Reply::invalid(
            json!([{"resource": "IssueComment", "code": "missing_field", "field": "body"}]),
            COMMENT_DOCS,
        );
    };
    let now = chrono::Utc::now();
    let id = bump(&mut st.next_id);
    let author = st.login.clone();
    let comment = Comment { id, issue: number, author, body, created_at: now, updated_at: now, edits: 0 };
    let repo = st.repo_mut(o, n);
    repo.comments.push(comment.clone());
    if let Some(i) = repo.issues.get_mut(&number) {
        i.updated_at = now;
    }
    let location = format!("{}/repos/{o}/{n}/issues/comments/{id}", st.base_url);
    Reply::created(comment_json(st, o, n, &comment), location)
}

fn edit_comment(st: &mut State, o: &str, n: &str, id: u64, json: Option<&Value>) -> Reply {
    let Some(body) = body_field(json) else {
        return Reply::invalid(
            json!([{"resource": "IssueComment", "code": "missing_field", "field": "body"}]),
            COMMENT_DOCS,
        );
    };
    let now = chrono::Utc::now();
    let repo = st.repo_mut(o, n);
    let Some(c) = repo.comments.iter_mut().find(|c| c.id == id) else { return Reply::not_found() };
    c.body = body;
    c.updated_at = now;
    c.edits += 1;
    let c = c.clone();
    Reply::ok(comment_json(st, o, n, &c))
}

fn labels_json(st: &State, o: &str, n: &str, number: u64) -> Value {
    match st.repo(o, n) {
        Some(repo) => {
            let ctx = Ctx { base: &st.base_url, repo, users: &st.user_ids };
            let labels = repo.issues.get(&number).map(|i| i.labels.clone()).unwrap_or_default();
            Value::Array(labels.iter().map(|l| templates::label(&ctx, l)).collect())
        }
        None => Value::Null,
    }
}

fn issue_labels(st: &mut State, o: &str, n: &str, number: u64) -> Reply {
    Reply::ok(labels_json(st, o, n, number))
}

const LABEL_DOCS: &str = "https://docs.github.com/rest/issues/labels#add-labels-to-an-issue";

fn add_labels(st: &mut State, o: &str, n: &str, number: u64, json: Option<&Value>) -> Reply {
    // GitHub takes `{"labels": [...]}` or a bare array.
    let list = json.and_then(|j| j.get("labels").or(Some(j))).and_then(Value::as_array);
    let names: Option<Vec<String>> = list.map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return Reply::invalid(json!([{"resource": "Label", "code": "missing_field", "field": "labels"}]), LABEL_DOCS);
    };
    let mut next = st.next_id;
    let now = chrono::Utc::now();
    let repo = st.repo_mut(o, n);
    for name in &names {
        // Labels are created on first use, and compare case-insensitively.
        let canonical =
            repo.labels.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned().unwrap_or_else(|| name.clone());
        repo.label_id(&canonical, &mut next);
        if let Some(issue) = repo.issues.get_mut(&number)
            && !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&canonical))
        {
            issue.labels.push(canonical);
            issue.updated_at = now;
        }
    }
    st.next_id = next;
    Reply::ok(labels_json(st, o, n, number))
}

fn remove_label(st: &mut State, o: &str, n: &str, number: u64, label: &str) -> Reply {
    let now = chrono::Utc::now();
    let repo = st.repo_mut(o, n);
    let Some(issue) = repo.issues.get_mut(&number) else { return Reply::not_found() };
    let before = issue.labels.len();
    issue.labels.retain(|l| !l.eq_ignore_ascii_case(label));
    if issue.labels.len() == before {
        return Reply::json(
            StatusCode::NOT_FOUND,
            templates::message(
                "Label does not exist",
                "https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue",
            ),
        );
    }
    issue.updated_at = now;
    Reply::ok(labels_json(st, o, n, number))
}

const ISSUE_DOCS: &str = "https://docs.github.com/rest/issues/issues#create-an-issue";

fn string_list(json: Option<&Value>, key: &str) -> Vec<String> {
    json.and_then(|j| j.get(key))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn create_issue(st: &mut State, o: &str, n: &str, json: Option<&Value>) -> Reply {
    let title = json.and_then(|j| j.get("title")).and_then(Value::as_str).unwrap_or_default().to_string();
    if title.trim().is_empty() {
        return Reply::invalid(json!([{"resource": "Issue", "code": "missing_field", "field": "title"}]), ISSUE_DOCS);
    }
    let body = body_field(json).unwrap_or_default();
    let labels = string_list(json, "labels");
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let Some(number) = st.repo(o, n).map(|r| r.next_number()) else { return Reply::not_found() };
    let author = st.login.clone();
    st.add_issue(o, n, number, &title, &body, &author, &labels, chrono::Utc::now());
    let location = format!("{}/repos/{o}/{n}/issues/{number}", st.base_url);
    match st.repo(o, n).and_then(|r| r.issues.get(&number)) {
        Some(i) => Reply::created(ctx_issue_json(st, o, n, i, true), location),
        None => Reply::not_found(),
    }
}

fn edit_issue(st: &mut State, o: &str, n: &str, number: u64, json: Option<&Value>) -> Reply {
    let now = chrono::Utc::now();
    let field = |k: &str| json.and_then(|j| j.get(k)).and_then(Value::as_str).map(str::to_string);
    let repo = st.repo_mut(o, n);
    let Some(issue) = repo.issues.get_mut(&number) else { return Reply::not_found() };
    if let Some(body) = field("body") {
        issue.body = (!body.is_empty()).then_some(body);
    }
    if let Some(title) = field("title") {
        issue.title = title;
    }
    match field("state").as_deref() {
        Some("closed") if issue.open => {
            issue.open = false;
            issue.closed_at = Some(now);
        }
        Some("open") => {
            issue.open = true;
            issue.closed_at = None;
        }
        _ => {}
    }
    issue.updated_at = now;
    get_issue(st, o, n, number)
}

const SUB_ISSUE_DOCS: &str = "https://docs.github.com/rest/issues/sub-issues#add-sub-issue";

fn list_sub_issues(st: &mut State, o: &str, n: &str, parent: u64, query: &[(String, String)]) -> Reply {
    if st.sub_issue_support != SubIssueSupport::Enabled {
        return Reply::not_found();
    }
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let children = repo.sub_issues.get(&parent).cloned().unwrap_or_default();
    let items: Vec<Value> =
        children.iter().filter_map(|c| repo.issues.get(c)).map(|i| ctx_issue_json(st, o, n, i, false)).collect();
    let link_base = format!("{}/repositories/{}/issues/{parent}/sub_issues", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

fn add_sub_issue(st: &mut State, o: &str, n: &str, parent: u64, json: Option<&Value>) -> Reply {
    match st.sub_issue_support {
        SubIssueSupport::Enabled => {}
        SubIssueSupport::NotFound => return Reply::not_found(),
        SubIssueSupport::Disabled => {
            return Reply::json(
                StatusCode::UNPROCESSABLE_ENTITY,
                templates::message("Sub-issues are disabled for this repository", SUB_ISSUE_DOCS),
            );
        }
    }
    let Some(child_id) = json.and_then(|j| j.get("sub_issue_id")).and_then(Value::as_u64) else {
        return Reply::invalid(
            json!([{"resource": "Issue", "code": "missing_field", "field": "sub_issue_id"}]),
            SUB_ISSUE_DOCS,
        );
    };
    let custom = |message: &str| {
        Reply::invalid(
            json!([{"resource": "Issue", "code": "custom", "field": "sub_issue_id", "message": message}]),
            SUB_ISSUE_DOCS,
        )
    };
    let repo = st.repo_mut(o, n);
    // The API takes the child's id, not its number.
    let Some(child) = repo.issues.values().find(|i| i.id == child_id).map(|i| i.number) else {
        return Reply::not_found();
    };
    if child == parent {
        return custom("An issue may not be its own sub-issue");
    }
    if repo.sub_issues.get(&parent).is_some_and(|c| c.contains(&child)) {
        return custom("Issue may not contain duplicate sub-issues");
    }
    if repo.sub_issues.values().any(|c| c.contains(&child)) {
        return custom("Sub issue may only have one parent");
    }
    repo.sub_issues.entry(parent).or_default().push(child);
    if let Some(i) = repo.issues.get_mut(&parent) {
        i.updated_at = chrono::Utc::now();
    }
    let location = format!("{}/repos/{o}/{n}/issues/{parent}/sub_issues", st.base_url);
    match st.repo(o, n).and_then(|r| r.issues.get(&parent)) {
        Some(i) => Reply::created(ctx_issue_json(st, o, n, i, true), location),
        None => Reply::not_found(),
    }
}

/// The plain-text page at an issue's or PR's `html_url`.
fn page(st: &State, o: &str, n: &str, kind: &str, number: &str) -> Reply {
    let Some(issue) = number.parse::<u64>().ok().and_then(|num| st.repo(o, n)?.issues.get(&num)) else {
        return Reply::not_found();
    };
    let mut out = match (&issue.pull, kind) {
        (Some(p), "pull") => {
            format!("Pull request #{} in {o}/{n}: {}\n{} <- {}\n", issue.number, issue.title, p.base, p.head)
        }
        (None, "issues") => format!("Issue #{} in {o}/{n}: {}\n", issue.number, issue.title),
        _ => return Reply::not_found(),
    };
    out.push_str(&format!(
        "state: {}\nauthor: {}\nlabels: {}\n\n{}\n",
        if issue.open { "open" } else { "closed" },
        issue.author,
        issue.labels.join(", "),
        issue.body.as_deref().unwrap_or_default()
    ));
    if let Some(repo) = st.repo(o, n) {
        for c in repo.comments.iter().filter(|c| c.issue == issue.number) {
            out.push_str(&format!("\n--- comment {} by {} ---\n{}\n", c.id, c.author, c.body));
        }
    }
    Reply::text(out)
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Percent-decoding (invalid escapes are kept as they are).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    crate::forge::encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("good%20first%20issue"), "good first issue");
        assert_eq!(decode("a%2Fb"), "a/b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%C3%BC"), "ü");
        assert_eq!(
            query_pairs("labels=a%20b&per_page=3"),
            vec![("labels".into(), "a b".into()), ("per_page".into(), "3".into())]
        );
    }

    #[test]
    fn pagination_links_look_like_githubs() {
        let items: Vec<Value> = (0..7).map(|i| json!(i)).collect();
        let q = query_pairs("state=open&per_page=3&page=2");
        let r = paginate(items, &q, "http://h/repositories/1/issues");
        assert_eq!(r.body, Some(json!([3, 4, 5])));
        let link = &r.headers[0].1;
        assert_eq!(
            link,
            "<http://h/repositories/1/issues?state=open&per_page=3&page=1>; rel=\"prev\", \
             <http://h/repositories/1/issues?state=open&per_page=3&page=3>; rel=\"next\", \
             <http://h/repositories/1/issues?state=open&per_page=3&page=3>; rel=\"last\", \
             <http://h/repositories/1/issues?state=open&per_page=3&page=1>; rel=\"first\""
        );
    }
}
