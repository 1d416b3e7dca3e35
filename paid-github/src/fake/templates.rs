//! Response bodies built from recorded GitHub objects.
//!
//! Each builder starts from a recorded object in `fixtures/` and overrides
//! only the fields that vary, so the fake's objects have exactly the keys
//! real GitHub sends.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use paid_core::Timestamp;
use serde_json::{Map, Value, json};

use super::state::{CheckRunRec, Comment, Issue, ReactionRec, Repo, ReviewCommentRec, ReviewRec};

const PAGINATE_ISSUES: &str = include_str!("../../fixtures/github/paginate-issues.json");
const ADD_LABELS: &str = include_str!("../../fixtures/github/add-labels-to-issue.json");
const ERRORS: &str = include_str!("../../fixtures/github/errors.json");
const GET_REPOSITORY: &str = include_str!("../../fixtures/github/get-repository.json");
const PULLS_LIST: &str = include_str!("../../fixtures/octocrab/pull-requests-list.json");
const PULL_FULL: &str = include_str!("../../fixtures/octocrab/pull-request.json");
const COMMENT: &str = include_str!("../../fixtures/octocrab/issue-comment.json");
const PULL_AS_ISSUE: &str = include_str!("../../fixtures/octocrab/pull-request-issue.json");

/// The recorded objects the fake's answers are made from.
pub(crate) struct Templates {
    /// An issue as listed by `GET /repos/{o}/{r}/issues`.
    pub issue_in_list: Value,
    /// An issue as returned alone (has `closed_by`).
    pub issue: Value,
    /// A pull request as seen through the issues API (`draft`, `pull_request`).
    pub pull_as_issue: Value,
    /// A label on an issue.
    pub label: Value,
    /// A user.
    pub user: Value,
    /// A 422 body.
    pub validation_error: Value,
    /// A pull request in `GET /pulls` (the "simple" shape).
    pub pull_simple: Value,
    /// A pull request as created or fetched alone (the full shape).
    pub pull: Value,
    /// An issue comment.
    pub comment: Value,
    /// A repository as returned by `GET /repos/{o}/{r}` (has `permissions`).
    pub repository: Value,
}

/// The templates, parsed once. A fixture that does not parse is a bug in
/// this crate, caught by its tests; it then yields `null` templates.
pub(crate) fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(|| {
        let session = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
        let paginate = session(PAGINATE_ISSUES);
        let add_labels = session(ADD_LABELS);
        let issue_in_list = paginate[0]["response"][0].clone();
        Templates {
            user: issue_in_list["user"].clone(),
            issue_in_list,
            issue: add_labels[0]["response"].clone(),
            pull_as_issue: session(PULL_AS_ISSUE),
            label: add_labels[1]["response"][0].clone(),
            validation_error: session(ERRORS)[0]["response"].clone(),
            pull_simple: session(PULLS_LIST)[0].clone(),
            pull: session(PULL_FULL),
            comment: session(COMMENT),
            repository: session(GET_REPOSITORY)[0]["response"].clone(),
        }
    })
}

/// Where the fake lives, and the repository an object belongs to.
pub(crate) struct Ctx<'a> {
    pub base: &'a str,
    pub repo: &'a Repo,
    /// User ids set with [`crate::fake::FakeGitHub::set_user_id`], by
    /// lowercase login.
    pub users: &'a BTreeMap<String, u64>,
}

impl Ctx<'_> {
    /// The user id of `login`: the one set for it, or the stable default.
    pub fn user_id(&self, login: &str) -> u64 {
        self.users.get(&login.to_ascii_lowercase()).copied().unwrap_or_else(|| user_id(login))
    }

    fn api(&self) -> String {
        format!("{}/repos/{}/{}", self.base, self.repo.owner, self.repo.name)
    }

    fn html(&self) -> String {
        format!("{}/{}/{}", self.base, self.repo.owner, self.repo.name)
    }
}

/// Sets `key` if the template has it (templates decide the key set).
fn put(obj: &mut Value, key: &str, value: Value) {
    if let Some(slot) = obj.as_object_mut().and_then(|m| m.get_mut(key)) {
        *slot = value;
    }
}

fn time(t: Timestamp) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn opt_time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, time)
}

fn node_id(kind: &str, id: u64) -> Value {
    Value::String(format!("{kind}_fake{id:010}"))
}

/// A user object for `login`.
pub(crate) fn user(base: &str, login: &str, id: u64) -> Value {
    let mut u = templates().user.clone();
    let old = u["login"].as_str().unwrap_or_default().to_string();
    if !old.is_empty() {
        let (old_api, new_api) = (format!("https://api.github.com/users/{old}"), format!("{base}/users/{login}"));
        let (old_html, new_html) = (format!("https://github.com/{old}"), format!("{base}/{login}"));
        rewrite_strings(&mut u, &|s| s.replace(&old_api, &new_api).replace(&old_html, &new_html));
    }
    put(&mut u, "login", json!(login));
    put(&mut u, "id", json!(id));
    put(&mut u, "node_id", node_id("U", id));
    put(&mut u, "avatar_url", json!(format!("{base}/avatars/{login}")));
    u
}

/// Stable fake user ids derived from the login (case-insensitively: one
/// login, one account).
pub(crate) fn user_id(login: &str) -> u64 {
    10_000
        + login.to_ascii_lowercase().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 1_000_000
}

/// A label object.
pub(crate) fn label(ctx: &Ctx<'_>, name: &str) -> Value {
    let mut l = templates().label.clone();
    let id = ctx.repo.labels.get(name).copied().unwrap_or_default();
    put(&mut l, "id", json!(id));
    put(&mut l, "node_id", node_id("LA", id));
    put(&mut l, "url", json!(format!("{}/labels/{}", ctx.api(), crate::forge::encode(name))));
    put(&mut l, "name", json!(name));
    l
}

/// An issue (or a pull request seen as an issue). `single` picks the shape
/// of `GET .../issues/{n}` over that of a list item.
pub(crate) fn issue(ctx: &Ctx<'_>, issue: &Issue, comments: usize, single: bool) -> Value {
    let t = templates();
    let mut v = match (&issue.pull, single) {
        (Some(_), _) => t.pull_as_issue.clone(),
        (None, true) => t.issue.clone(),
        (None, false) => t.issue_in_list.clone(),
    };
    let api = format!("{}/issues/{}", ctx.api(), issue.number);
    put(&mut v, "url", json!(api));
    put(&mut v, "repository_url", json!(ctx.api()));
    put(&mut v, "labels_url", json!(format!("{api}/labels{{/name}}")));
    put(&mut v, "comments_url", json!(format!("{api}/comments")));
    put(&mut v, "events_url", json!(format!("{api}/events")));
    put(&mut v, "timeline_url", json!(format!("{api}/timeline")));
    let kind = if issue.pull.is_some() { "pull" } else { "issues" };
    put(&mut v, "html_url", json!(format!("{}/{kind}/{}", ctx.html(), issue.number)));
    put(&mut v, "id", json!(issue.id));
    put(&mut v, "node_id", node_id("I", issue.id));
    put(&mut v, "number", json!(issue.number));
    put(&mut v, "title", json!(issue.title));
    put(&mut v, "user", user(ctx.base, &issue.author, ctx.user_id(&issue.author)));
    put(&mut v, "labels", Value::Array(issue.labels.iter().map(|l| label(ctx, l)).collect()));
    put(&mut v, "state", json!(if issue.open { "open" } else { "closed" }));
    put(&mut v, "state_reason", if issue.open { Value::Null } else { json!("completed") });
    put(&mut v, "comments", json!(comments));
    put(&mut v, "created_at", time(issue.created_at));
    put(&mut v, "updated_at", time(issue.updated_at));
    put(&mut v, "closed_at", opt_time(issue.closed_at));
    put(&mut v, "closed_by", Value::Null);
    put(&mut v, "body", issue.body.clone().map_or(Value::Null, Value::String));
    put(&mut v, "assignee", Value::Null);
    put(&mut v, "assignees", json!([]));
    put(&mut v, "milestone", Value::Null);
    put(&mut v, "draft", json!(false));
    if let Some(reactions) = v.get_mut("reactions") {
        put(reactions, "url", json!(format!("{api}/reactions")));
    }
    if issue.pull.is_some() {
        let pulls = format!("{}/pulls/{}", ctx.api(), issue.number);
        let html = format!("{}/pull/{}", ctx.html(), issue.number);
        put(
            &mut v,
            "pull_request",
            json!({
                "url": pulls,
                "html_url": html,
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "merged_at": null,
            }),
        );
    }
    v
}

/// An issue comment.
pub(crate) fn comment(ctx: &Ctx<'_>, c: &Comment) -> Value {
    let mut v = templates().comment.clone();
    let url = format!("{}/issues/comments/{}", ctx.api(), c.id);
    put(&mut v, "url", json!(url));
    put(&mut v, "html_url", json!(format!("{}/issues/{}#issuecomment-{}", ctx.html(), c.issue, c.id)));
    put(&mut v, "issue_url", json!(format!("{}/issues/{}", ctx.api(), c.issue)));
    put(&mut v, "id", json!(c.id));
    put(&mut v, "node_id", node_id("IC", c.id));
    put(&mut v, "user", user(ctx.base, &c.author, ctx.user_id(&c.author)));
    put(&mut v, "created_at", time(c.created_at));
    put(&mut v, "updated_at", time(c.updated_at));
    put(&mut v, "author_association", json!("OWNER"));
    put(&mut v, "body", json!(c.body));
    if let Some(reactions) = v.get_mut("reactions") {
        put(reactions, "url", json!(format!("{url}/reactions")));
    }
    v
}

/// A pull request; `full` picks the shape of a single PR over a list item.
pub(crate) fn pull(ctx: &Ctx<'_>, issue: &Issue, full: bool) -> Value {
    let t = templates();
    let mut v = if full { t.pull.clone() } else { t.pull_simple.clone() };
    let Some(p) = &issue.pull else { return v };
    let n = issue.number;
    let api = format!("{}/pulls/{n}", ctx.api());
    let html = format!("{}/pull/{n}", ctx.html());
    let issue_api = format!("{}/issues/{n}", ctx.api());
    let statuses = format!("{}/statuses/{}", ctx.api(), p.head_sha);
    put(&mut v, "url", json!(api));
    put(&mut v, "id", json!(p.id));
    put(&mut v, "node_id", node_id("PR", p.id));
    put(&mut v, "html_url", json!(html));
    put(&mut v, "diff_url", json!(format!("{html}.diff")));
    put(&mut v, "patch_url", json!(format!("{html}.patch")));
    put(&mut v, "issue_url", json!(issue_api));
    put(&mut v, "commits_url", json!(format!("{api}/commits")));
    put(&mut v, "review_comments_url", json!(format!("{api}/comments")));
    put(&mut v, "review_comment_url", json!(format!("{}/pulls/comments{{/number}}", ctx.api())));
    put(&mut v, "comments_url", json!(format!("{issue_api}/comments")));
    put(&mut v, "statuses_url", json!(statuses));
    put(&mut v, "number", json!(n));
    put(&mut v, "state", json!(if issue.open { "open" } else { "closed" }));
    put(&mut v, "locked", json!(false));
    put(&mut v, "title", json!(issue.title));
    put(&mut v, "user", user(ctx.base, &issue.author, ctx.user_id(&issue.author)));
    put(&mut v, "body", issue.body.clone().map_or(Value::Null, Value::String));
    put(&mut v, "labels", Value::Array(issue.labels.iter().map(|l| label(ctx, l)).collect()));
    put(&mut v, "milestone", Value::Null);
    put(&mut v, "created_at", time(issue.created_at));
    put(&mut v, "updated_at", time(issue.updated_at));
    put(&mut v, "closed_at", opt_time(issue.closed_at));
    let merged_at = if p.merged { opt_time(issue.closed_at) } else { Value::Null };
    put(&mut v, "merged_at", merged_at.clone());
    put(&mut v, "merge_commit_sha", if p.merged { json!(format!("{:0>40}", n)) } else { Value::Null });
    put(&mut v, "assignee", Value::Null);
    put(&mut v, "assignees", json!([]));
    put(&mut v, "requested_reviewers", json!([]));
    put(&mut v, "requested_teams", json!([]));
    put(&mut v, "draft", json!(false));
    put(&mut v, "auto_merge", Value::Null);
    put(&mut v, "author_association", json!("OWNER"));
    for (key, branch, sha) in [("head", &p.head, p.head_sha.as_str()), ("base", &p.base, "")] {
        if let Some(side) = v.get_mut(key) {
            put(side, "label", json!(format!("{}:{branch}", ctx.repo.owner)));
            put(side, "ref", json!(branch));
            if !sha.is_empty() {
                put(side, "sha", json!(sha));
            }
            put(side, "user", user(ctx.base, &ctx.repo.owner, ctx.user_id(&ctx.repo.owner)));
            if let Some(repo) = side.get_mut("repo") {
                rename_repo(ctx, repo);
            }
        }
    }
    let links = json!({
        "self": {"href": api},
        "html": {"href": html},
        "issue": {"href": issue_api},
        "comments": {"href": format!("{issue_api}/comments")},
        "review_comments": {"href": format!("{api}/comments")},
        "review_comment": {"href": format!("{}/pulls/comments{{/number}}", ctx.api())},
        "commits": {"href": format!("{api}/commits")},
        "statuses": {"href": statuses},
    });
    put(&mut v, "_links", links);
    // Fields only the full shape has.
    put(&mut v, "merged", json!(p.merged));
    put(&mut v, "mergeable", Value::Null);
    put(&mut v, "rebaseable", Value::Null);
    put(&mut v, "mergeable_state", json!("unknown"));
    put(&mut v, "merged_by", Value::Null);
    put(&mut v, "comments", json!(0));
    put(&mut v, "review_comments", json!(0));
    put(&mut v, "maintainer_can_modify", json!(false));
    put(&mut v, "commits", json!(1));
    v
}

// The objects below are not in the recorded sessions; their keys follow
// GitHub's REST documentation for each endpoint (the fields Paid reads, and
// the ones a client commonly relies on).

/// A check run, as listed by `GET /repos/{o}/{r}/commits/{ref}/check-runs`.
pub(crate) fn check_run(ctx: &Ctx<'_>, sha: &str, c: &CheckRunRec) -> Value {
    let html = format!("{}/runs/{}", ctx.html(), c.id);
    json!({
        "id": c.id,
        "node_id": node_id("CR", c.id),
        "head_sha": sha,
        "external_id": "",
        "url": format!("{}/check-runs/{}", ctx.api(), c.id),
        "html_url": html,
        "details_url": html,
        "status": c.status,
        "conclusion": c.conclusion,
        "started_at": time(c.at),
        "completed_at": if c.status == "completed" { time(c.at) } else { Value::Null },
        "output": {
            "title": c.title,
            "summary": c.summary,
            "text": c.text,
            "annotations_count": 0,
            "annotations_url": format!("{}/check-runs/{}/annotations", ctx.api(), c.id),
        },
        "name": c.name,
        "check_suite": {"id": c.id + 1},
        "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
        "pull_requests": [],
    })
}

/// A pull request review comment.
pub(crate) fn review_comment(ctx: &Ctx<'_>, c: &ReviewCommentRec, head_sha: &str) -> Value {
    let url = format!("{}/pulls/comments/{}", ctx.api(), c.id);
    let html = format!("{}/pull/{}#discussion_r{}", ctx.html(), c.pull, c.id);
    let mut v = json!({
        "url": url,
        "pull_request_review_id": c.id + 1,
        "id": c.id,
        "node_id": node_id("PRRC", c.id),
        "diff_hunk": format!("@@ -1,1 +1,1 @@\n+line {}", c.line),
        "path": c.path,
        "position": if c.outdated { Value::Null } else { json!(c.line) },
        "original_position": c.line,
        "commit_id": head_sha,
        "original_commit_id": head_sha,
        "user": user(ctx.base, &c.author, ctx.user_id(&c.author)),
        "body": c.body,
        "created_at": time(c.at),
        "updated_at": time(c.at),
        "html_url": html,
        "pull_request_url": format!("{}/pulls/{}", ctx.api(), c.pull),
        "author_association": "CONTRIBUTOR",
        "_links": {
            "self": {"href": url},
            "html": {"href": html},
            "pull_request": {"href": format!("{}/pulls/{}", ctx.api(), c.pull)},
        },
        "start_line": Value::Null,
        "original_start_line": Value::Null,
        "start_side": Value::Null,
        "line": if c.outdated { Value::Null } else { json!(c.line) },
        "original_line": c.line,
        "side": "RIGHT",
        "subject_type": "line",
    });
    if let (Some(reply_to), Some(m)) = (c.in_reply_to, v.as_object_mut()) {
        m.insert("in_reply_to_id".into(), json!(reply_to));
    }
    v
}

/// A pull request review.
pub(crate) fn review(ctx: &Ctx<'_>, r: &ReviewRec, head_sha: &str) -> Value {
    let html = format!("{}/pull/{}#pullrequestreview-{}", ctx.html(), r.pull, r.id);
    json!({
        "id": r.id,
        "node_id": node_id("PRR", r.id),
        "user": user(ctx.base, &r.author, ctx.user_id(&r.author)),
        "body": r.body,
        "state": r.state,
        "html_url": html,
        "pull_request_url": format!("{}/pulls/{}", ctx.api(), r.pull),
        "author_association": "CONTRIBUTOR",
        "_links": {
            "html": {"href": html},
            "pull_request": {"href": format!("{}/pulls/{}", ctx.api(), r.pull)},
        },
        "submitted_at": time(r.at),
        "commit_id": head_sha,
    })
}

/// A reaction.
pub(crate) fn reaction(ctx: &Ctx<'_>, r: &ReactionRec) -> Value {
    json!({
        "id": r.id,
        "node_id": node_id("REA", r.id),
        "user": user(ctx.base, &r.author, ctx.user_id(&r.author)),
        "content": r.content,
        "created_at": time(r.at),
    })
}

/// A repository, with the token's permissions on it: the recorded
/// owner's, less `admin`, `maintain` and `push` when it may not push.
pub(crate) fn repository(ctx: &Ctx<'_>) -> Value {
    let mut v = templates().repository.clone();
    rename_repo(ctx, &mut v);
    put(&mut v, "private", json!(false));
    put(&mut v, "visibility", json!("public"));
    let open = ctx.repo.issues.values().filter(|i| i.open).count();
    put(&mut v, "open_issues_count", json!(open));
    put(&mut v, "open_issues", json!(open));
    if !ctx.repo.push
        && let Some(p) = v.get_mut("permissions")
    {
        for key in ["admin", "maintain", "push"] {
            put(p, key, json!(false));
        }
    }
    v
}

/// Points a recorded repository object at the fake's repository.
fn rename_repo(ctx: &Ctx<'_>, repo: &mut Value) {
    let Some(old) = repo["full_name"].as_str().map(str::to_string) else { return };
    let new = format!("{}/{}", ctx.repo.owner, ctx.repo.name);
    rewrite_strings(repo, &|s| {
        s.replace("https://api.github.com/repos/", &format!("{}/repos/", ctx.base))
            .replace("https://github.com/", &format!("{}/", ctx.base))
            .replace(&old, &new)
    });
    put(repo, "id", json!(ctx.repo.id));
    put(repo, "node_id", node_id("R", ctx.repo.id));
    put(repo, "name", json!(ctx.repo.name));
    put(repo, "full_name", json!(new));
    put(repo, "owner", user(ctx.base, &ctx.repo.owner, ctx.user_id(&ctx.repo.owner)));
}

fn rewrite_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_strings(x, f)),
        Value::Object(m) => m.values_mut().for_each(|x| rewrite_strings(x, f)),
        _ => {}
    }
}

/// A 422 body, shaped like `errors.json`.
pub(crate) fn validation_error(errors: Value, docs: &str) -> Value {
    let mut v = templates().validation_error.clone();
    put(&mut v, "message", json!("Validation Failed"));
    put(&mut v, "errors", errors);
    put(&mut v, "documentation_url", json!(docs));
    v
}

/// GitHub's body for other errors.
pub(crate) fn message(message: &str, docs: &str) -> Value {
    let mut m = Map::new();
    m.insert("message".into(), json!(message));
    m.insert("documentation_url".into(), json!(docs));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::fake::state::{Pull, State};

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    fn state_with_issue() -> State {
        let mut s = State::new("http://127.0.0.1:9".into(), None, "paid-bot".into());
        s.add_issue("o", "r", 7, "Bug", "It breaks", "alice", &["paid-build"], chrono::Utc::now());
        s
    }

    #[test]
    fn issues_have_the_recorded_keys() {
        let s = state_with_issue();
        let repo = s.repo("o", "r").unwrap();
        let ctx = Ctx { base: &s.base_url, repo, users: &s.user_ids };
        let issue = &repo.issues[&7];

        let session: Vec<Value> = serde_json::from_str(PAGINATE_ISSUES).unwrap();
        let listed = issue_fn(&ctx, issue, false);
        for recorded in session.iter().flat_map(|e| e["response"].as_array().unwrap()) {
            assert_eq!(keys(&listed), keys(recorded));
            assert_eq!(keys(&listed["user"]), keys(&recorded["user"]));
        }
        let single = issue_fn(&ctx, issue, true);
        let recorded: Vec<Value> = serde_json::from_str(ADD_LABELS).unwrap();
        assert_eq!(keys(&single), keys(&recorded[0]["response"]));
        assert_eq!(keys(&single["labels"][0]), keys(&recorded[1]["response"][0]));

        assert_eq!(listed["number"], 7);
        assert_eq!(listed["user"]["login"], "alice");
        assert_eq!(listed["user"]["url"], "http://127.0.0.1:9/users/alice");
        assert_eq!(listed["user"]["following_url"], "http://127.0.0.1:9/users/alice/following{/other_user}");
        assert_eq!(listed["labels"][0]["name"], "paid-build");
        assert_eq!(listed["url"], "http://127.0.0.1:9/repos/o/r/issues/7");
        assert_eq!(listed["body"], "It breaks");
    }

    fn issue_fn(ctx: &Ctx<'_>, i: &Issue, single: bool) -> Value {
        issue(ctx, i, 0, single)
    }

    #[test]
    fn pull_requests_have_the_documented_keys() {
        let mut s = state_with_issue();
        let now = chrono::Utc::now();
        let repo = s.repo_mut("o", "r");
        repo.issues.insert(
            8,
            Issue {
                id: 5,
                number: 8,
                title: "Fix #7: Bug".into(),
                body: Some("Closes #7".into()),
                author: "paid-bot".into(),
                labels: vec![],
                open: true,
                created_at: now,
                updated_at: now,
                closed_at: None,
                pull: Some(Pull {
                    id: 6,
                    head: "paid/7-bug-abcdef".into(),
                    head_owner: None,
                    head_sha: "0".repeat(40),
                    base: "main".into(),
                    merged: false,
                }),
            },
        );
        let repo = s.repo("o", "r").unwrap();
        let ctx = Ctx { base: &s.base_url, repo, users: &s.user_ids };
        let pr = &repo.issues[&8];
        let full = pull(&ctx, pr, true);
        assert_eq!(keys(&full), keys(&serde_json::from_str::<Value>(PULL_FULL).unwrap()));
        for key in ["number", "html_url", "head", "base", "state", "title", "body", "merged"] {
            assert!(full.get(key).is_some(), "{key}");
        }
        assert_eq!(full["head"]["ref"], "paid/7-bug-abcdef");
        assert_eq!(full["head"]["label"], "o:paid/7-bug-abcdef");
        assert_eq!(full["base"]["ref"], "main");
        assert_eq!(full["base"]["repo"]["full_name"], "o/r");
        assert_eq!(full["merged"], false);
        let simple = pull(&ctx, pr, false);
        assert_eq!(keys(&simple), keys(&serde_json::from_str::<Value>(PULLS_LIST).unwrap()[0]));
        let as_issue = issue(&ctx, pr, 0, false);
        assert_eq!(keys(&as_issue), keys(&serde_json::from_str::<Value>(PULL_AS_ISSUE).unwrap()));
        assert_eq!(as_issue["pull_request"]["url"], "http://127.0.0.1:9/repos/o/r/pulls/8");
    }

    #[test]
    fn comments_and_errors_have_the_recorded_keys() {
        let s = state_with_issue();
        let repo = s.repo("o", "r").unwrap();
        let ctx = Ctx { base: &s.base_url, repo, users: &s.user_ids };
        let now = chrono::Utc::now();
        let c = Comment {
            id: 9,
            issue: 7,
            author: "paid-bot".into(),
            body: "hi".into(),
            created_at: now,
            updated_at: now,
            edits: 0,
        };
        assert_eq!(keys(&comment(&ctx, &c)), keys(&serde_json::from_str::<Value>(COMMENT).unwrap()));
        let recorded: Vec<Value> = serde_json::from_str(ERRORS).unwrap();
        let body =
            validation_error(json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]), "d");
        assert_eq!(keys(&body), keys(&recorded[0]["response"]));
    }
}
