//! Planning: issues created under a parent, linked as GitHub sub-issues or,
//! where the forge is configured without them ([`crate::Capabilities`]), by
//! a task list in the parent's body. Which one is configuration, never a
//! guess from an error: with sub-issues on, a `401`, `403` or `404` of the
//! sub-issue API is returned as the error it is.
//!
//! Idempotent per [`SubIssueRequest::key`]: the child's body carries the
//! hidden marker `<!-- paid:sub-issue:{key} -->`, and a child of ours with
//! that marker is reused instead of created again. Linking twice is harmless
//! too: an existing sub-issue link or task-list line is left as is.

use http::Method;
use paid_core::ports::forge::{SubIssue, SubIssueLink, SubIssueRequest};

use super::models::{AddSubIssue, Issue, IssueBody, NewIssue};
use super::{GitHubForge, encode, not_found, repo_path};
use crate::error::{Error, Result};

/// The hidden marker a sub-issue's body carries.
pub(crate) fn sub_issue_marker(key: &str) -> String {
    format!("<!-- paid:sub-issue:{key} -->")
}

impl GitHubForge {
    /// Creates an issue under `req.parent`, labeled with `req.labels` (e.g.
    /// `paid-build`, so it is executed), and links it:
    ///
    /// - with [`Capabilities::sub_issues`](crate::Capabilities::sub_issues)
    ///   (the default), through GitHub's sub-issue API (`POST
    ///   /repos/{o}/{r}/issues/{parent}/sub_issues`). Its errors are errors:
    ///   a missing parent is [`Error::NotFound`], a revoked token
    ///   [`Error::Unauthorized`], a `404` of the API although the parent
    ///   exists an [`Error::Unexpected`] saying to turn sub-issues off, and
    ///   GitHub's "sub-issues are disabled" [`Error::NotSupported`];
    /// - else, with [`Capabilities::task_lists`](crate::Capabilities::task_lists),
    ///   by appending `- [ ] #N title` to the parent's body;
    /// - else it fails with [`Error::NotSupported`] before any request.
    ///
    /// Calling it again with the same key returns the same issue
    /// (`created: false`) and links it at most once.
    pub async fn create_sub_issue(&self, req: &SubIssueRequest) -> Result<SubIssue> {
        if req.key.trim().is_empty() || req.key.contains("-->") {
            return Err(Error::InvalidInput {
                what: "sub_issue.key",
                message: format!("{:?} cannot be an idempotency key (empty, or contains \"-->\")", req.key),
            });
        }
        let caps = self.capabilities;
        if !caps.sub_issues && !caps.task_lists {
            return Err(Error::NotSupported {
                what: format!(
                    "creating sub-issues under {}#{}: the forge for {} is configured without sub-issues and without \
                     task lists; turn one of them on (GitHubConfig::capabilities)",
                    req.repo,
                    req.parent,
                    self.base_uri()
                ),
            });
        }
        let repo = repo_path(&req.repo);
        let marker = sub_issue_marker(&req.key);
        let (child, created) = match self.find_sub_issue(req, &marker).await? {
            Some(issue) => (issue, false),
            None => {
                let body = if req.body.is_empty() { marker.clone() } else { format!("{}\n\n{marker}", req.body) };
                let new = NewIssue { title: &req.title, body: &body, labels: &req.labels };
                let issue: Issue = self
                    .client
                    .json(Method::POST, &format!("{repo}/issues"), Some(&new))
                    .await
                    .map_err(not_found("repository", &req.repo, None))?;
                (issue, true)
            }
        };
        let link = if caps.sub_issues {
            self.link_sub_issue(req, &child).await?;
            SubIssueLink::SubIssue
        } else {
            self.append_task(req, &child).await?;
            SubIssueLink::TaskList
        };
        Ok(SubIssue { number: child.number, url: child.html_url, link, created })
    }

    /// The issue we created earlier for this key, if any.
    async fn find_sub_issue(&self, req: &SubIssueRequest, marker: &str) -> Result<Option<Issue>> {
        let login = self.login().await?;
        let mut uri =
            format!("{}/issues?state=all&creator={}&per_page={}", repo_path(&req.repo), encode(&login), self.per_page);
        if let Some(label) = req.labels.first() {
            uri.push_str(&format!("&labels={}", encode(label)));
        }
        let issues: Vec<Issue> = self.client.list(&uri).await.map_err(not_found("repository", &req.repo, None))?;
        Ok(issues.into_iter().find(|i| !i.is_pull_request() && i.body.as_deref().is_some_and(|b| b.contains(marker))))
    }

    async fn link_sub_issue(&self, req: &SubIssueRequest, child: &Issue) -> Result<()> {
        let uri = format!("{}/issues/{}/sub_issues", repo_path(&req.repo), req.parent);
        // Safe to resend: a repeat is refused as a duplicate, handled below.
        let sent = self
            .client
            .json_idempotent::<serde_json::Value, _>(Method::POST, &uri, Some(&AddSubIssue { sub_issue_id: child.id }))
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(Error::NotFound { request, .. }) => {
                // The parent is missing (an error), or the API is (an error
                // too, but one that says what to configure).
                self.get_issue_raw(req, req.parent).await?;
                Err(Error::Unexpected {
                    request,
                    status: 404,
                    message: format!(
                        "the sub-issue API is missing although {}#{} exists; if this GitHub has no sub-issues, \
                         configure the forge with Capabilities::sub_issues(false) to link with task lists",
                        req.repo, req.parent
                    ),
                })
            }
            Err(e @ Error::Validation { .. }) => {
                // A duplicate link: already ours. (A failure to list says
                // nothing more than the 422 itself.)
                if matches!(self.is_sub_issue(req, child.id).await, Ok(true)) {
                    return Ok(());
                }
                let text = e.to_string().to_ascii_lowercase();
                if ["disabled", "not enabled", "not available", "not supported"].iter().any(|w| text.contains(w)) {
                    Err(Error::NotSupported {
                        what: format!(
                            "sub-issues on {}: {e}; enable them for the repository, or configure the forge with \
                             Capabilities::sub_issues(false) to link with task lists",
                            req.repo
                        ),
                    })
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn is_sub_issue(&self, req: &SubIssueRequest, child_id: u64) -> Result<bool> {
        let uri = format!("{}/issues/{}/sub_issues?per_page={}", repo_path(&req.repo), req.parent, self.per_page);
        let children: Vec<Issue> = self.client.list(&uri).await?;
        Ok(children.iter().any(|c| c.id == child_id))
    }

    async fn get_issue_raw(&self, req: &SubIssueRequest, number: u64) -> Result<Issue> {
        let uri = format!("{}/issues/{number}", repo_path(&req.repo));
        self.client.json(Method::GET, &uri, None::<&()>).await.map_err(not_found("issue", &req.repo, number))
    }

    /// Appends `- [ ] #N title` to the parent's body unless a task line for
    /// `#N` is already there.
    async fn append_task(&self, req: &SubIssueRequest, child: &Issue) -> Result<()> {
        let parent = self.get_issue_raw(req, req.parent).await?;
        let body = parent.body.unwrap_or_default();
        if has_task(&body, child.number) {
            return Ok(());
        }
        let title = child.title.replace(['\r', '\n'], " ");
        let line = format!("- [ ] #{} {title}", child.number);
        let new_body = if body.trim().is_empty() {
            line
        } else if body.ends_with('\n') {
            format!("{body}{line}")
        } else {
            format!("{body}\n{line}")
        };
        let uri = format!("{}/issues/{}", repo_path(&req.repo), req.parent);
        self.client
            .call(Method::PATCH, &uri, Some(&IssueBody { body: &new_body }), true)
            .await
            .map_err(not_found("issue", &req.repo, req.parent))
    }
}

/// Whether `body` has a task-list line for issue `number`.
fn has_task(body: &str, number: u64) -> bool {
    let wanted = format!("#{number}");
    body.lines().any(|l| {
        let l = l.trim_start();
        let rest = ["- [ ] ", "- [x] ", "- [X] ", "* [ ] ", "* [x] "].iter().find_map(|p| l.strip_prefix(p));
        rest.is_some_and(|r| {
            r.strip_prefix(&wanted).is_some_and(|after| !after.starts_with(|c: char| c.is_ascii_digit()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lines_are_recognized_by_number() {
        let body = "Plan:\n- [ ] #12 First\n- [x] #3 Done\n  - [ ] #40";
        assert!(has_task(body, 12));
        assert!(has_task(body, 3));
        assert!(has_task(body, 40));
        assert!(!has_task(body, 1), "#12 is not #1");
        assert!(!has_task(body, 4));
        assert!(!has_task("see #12", 12));
    }
}
