//! The fake's pull requests and what follow-up reads of them: reviews,
//! review comments, reactions and check runs.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use super::routes::Reply;
use super::routes::paginate;
use super::state::{CheckRunRec, Issue, Pull, State, bump};
use super::templates::{self, Ctx};

fn pull_json(st: &State, o: &str, n: &str, number: u64, full: bool) -> Value {
    match st.repo(o, n) {
        Some(repo) => match repo.issues.get(&number) {
            Some(i) => templates::pull(&Ctx { base: &st.base_url, repo, users: &st.user_ids }, i, full),
            None => Value::Null,
        },
        None => Value::Null,
    }
}

pub(super) fn list_pulls(st: &mut State, o: &str, n: &str, query: &[(String, String)]) -> Reply {
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let state = get("state").unwrap_or_else(|| "open".into());
    let head = get("head");
    let base = get("base");
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let items: Vec<Value> = repo
        .issues
        .values()
        .rev()
        .filter(|i| {
            let Some(p) = &i.pull else { return false };
            let state_ok = match state.as_str() {
                "all" => true,
                "closed" => !i.open,
                _ => i.open,
            };
            // `head` is `owner:branch`.
            let head_ok = head.as_deref().is_none_or(|h| match h.split_once(':') {
                Some((owner, branch)) => {
                    owner.eq_ignore_ascii_case(p.head_owner.as_deref().unwrap_or(&repo.owner)) && branch == p.head
                }
                None => false,
            });
            state_ok && head_ok && base.as_deref().is_none_or(|b| b == p.base)
        })
        .map(|i| pull_json(st, o, n, i.number, false))
        .collect();
    let link_base = format!("{}/repositories/{}/pulls", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

pub(super) fn get_pull(st: &mut State, o: &str, n: &str, number: u64) -> Reply {
    Reply::ok(pull_json(st, o, n, number, true))
}

const PULL_DOCS: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";

pub(super) fn create_pull(st: &mut State, o: &str, n: &str, json: Option<&Value>) -> Reply {
    let field = |k: &str| json.and_then(|j| j.get(k)).and_then(Value::as_str).map(str::to_string);
    let missing: Vec<Value> = ["title", "head", "base"]
        .iter()
        .filter(|k| field(k).is_none_or(|v| v.trim().is_empty()))
        .map(|k| json!({"resource": "PullRequest", "code": "missing_field", "field": k}))
        .collect();
    if !missing.is_empty() {
        return Reply::invalid(Value::Array(missing), PULL_DOCS);
    }
    let (title, head, base) =
        (field("title").unwrap_or_default(), field("head").unwrap_or_default(), field("base").unwrap_or_default());
    // `owner:branch` names a fork's branch.
    let (head_owner, head) = match head.split_once(':') {
        Some((owner, branch)) if !owner.eq_ignore_ascii_case(o) => (Some(owner.to_string()), branch.to_string()),
        Some((_, branch)) => (None, branch.to_string()),
        None => (None, head.clone()),
    };
    let custom = |message: String| {
        Reply::invalid(json!([{"resource": "PullRequest", "code": "custom", "message": message}]), PULL_DOCS)
    };
    if head == base {
        return custom(format!("No commits between {base} and {head}"));
    }
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let exists = repo.issues.values().any(|i| {
        i.open && i.pull.as_ref().is_some_and(|p| p.head == head && p.head_owner == head_owner && p.base == base)
    });
    if exists {
        return custom(format!("A pull request already exists for {o}:{head}."));
    }
    let number = repo.next_number();
    let now = chrono::Utc::now();
    let (issue_id, pull_id) = (bump(&mut st.next_id), bump(&mut st.next_id));
    let author = st.login.clone();
    let head_sha = {
        let mut h = DefaultHasher::new();
        (o, n, &head, number).hash(&mut h);
        format!("{:016x}{:016x}{:08x}", h.finish(), h.finish().rotate_left(17), number)
    };
    let issue = Issue {
        id: issue_id,
        number,
        title,
        body: field("body").filter(|b| !b.is_empty()),
        author,
        labels: Vec::new(),
        open: true,
        created_at: now,
        updated_at: now,
        closed_at: None,
        pull: Some(Pull { id: pull_id, head, head_owner, head_sha, base, merged: false }),
    };
    st.repo_mut(o, n).issues.insert(number, issue);
    let location = format!("{}/repos/{o}/{n}/pulls/{number}", st.base_url);
    Reply::created(pull_json(st, o, n, number, true), location)
}

pub(super) fn with_pull(
    st: &mut State,
    o: &str,
    n: &str,
    number: &str,
    f: impl FnOnce(&mut State, u64) -> Reply,
) -> Reply {
    match number.parse::<u64>() {
        Ok(number) if st.repo(o, n).and_then(|r| r.issues.get(&number)).is_some_and(|i| i.pull.is_some()) => {
            f(st, number)
        }
        _ => Reply::not_found(),
    }
}

fn head_sha(st: &State, o: &str, n: &str, number: u64) -> String {
    st.repo(o, n)
        .and_then(|r| r.issues.get(&number))
        .and_then(|i| i.pull.as_ref())
        .map(|p| p.head_sha.clone())
        .unwrap_or_default()
}

pub(super) fn list_reactions(st: &mut State, o: &str, n: &str, number: u64, query: &[(String, String)]) -> Reply {
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let ctx = Ctx { base: &st.base_url, repo, users: &st.user_ids };
    let items: Vec<Value> =
        repo.reactions.iter().filter(|r| r.issue == number).map(|r| templates::reaction(&ctx, r)).collect();
    let link_base = format!("{}/repositories/{}/issues/{number}/reactions", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

pub(super) fn list_review_comments(st: &mut State, o: &str, n: &str, number: u64, query: &[(String, String)]) -> Reply {
    let sha = head_sha(st, o, n, number);
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let ctx = Ctx { base: &st.base_url, repo, users: &st.user_ids };
    let items: Vec<Value> = repo
        .review_comments
        .iter()
        .filter(|c| c.pull == number)
        .map(|c| templates::review_comment(&ctx, c, &sha))
        .collect();
    let link_base = format!("{}/repositories/{}/pulls/{number}/comments", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

pub(super) fn list_reviews(st: &mut State, o: &str, n: &str, number: u64, query: &[(String, String)]) -> Reply {
    let sha = head_sha(st, o, n, number);
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let ctx = Ctx { base: &st.base_url, repo, users: &st.user_ids };
    let items: Vec<Value> =
        repo.reviews.iter().filter(|r| r.pull == number).map(|r| templates::review(&ctx, r, &sha)).collect();
    let link_base = format!("{}/repositories/{}/pulls/{number}/reviews", st.base_url, repo.id);
    paginate(items, query, &link_base)
}

pub(super) fn list_check_runs(st: &mut State, o: &str, n: &str, sha: &str, query: &[(String, String)]) -> Reply {
    let Some(repo) = st.repo(o, n) else { return Reply::not_found() };
    let ctx = Ctx { base: &st.base_url, repo, users: &st.user_ids };
    let runs: Vec<&CheckRunRec> = repo.check_runs.get(sha).map(|v| v.iter().collect()).unwrap_or_default();
    let items: Vec<Value> = runs.iter().map(|c| templates::check_run(&ctx, sha, c)).collect();
    let total = items.len();
    let link_base = format!("{}/repositories/{}/commits/{sha}/check-runs", st.base_url, repo.id);
    // The list is wrapped: `{"total_count": N, "check_runs": [...]}`.
    let mut reply = paginate(items, query, &link_base);
    reply.body = reply.body.take().map(|page| json!({"total_count": total, "check_runs": page}));
    reply
}
