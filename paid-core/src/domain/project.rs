use serde::{Deserialize, Serialize};

use crate::{ProjectId, Timestamp};

/// A repository on a forge, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoRef {
    /// The owner (user or organization).
    pub owner: String,
    /// The repository name.
    pub name: String,
}

impl RepoRef {
    /// `owner/name`.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self { owner: owner.into(), name: name.into() }
    }

    /// Parses `owner/name`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s.split_once('/') {
            Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok(Self::new(o, n)),
            _ => Err(crate::Error::InvalidInput {
                what: "repository".into(),
                message: format!("{s:?} is not of the form owner/name"),
            }),
        }
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The labels Paid moves an issue through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelConfig {
    /// Set while a run works on the issue.
    pub in_progress: String,
    /// Set when the run opened a PR.
    pub done: String,
    /// Set when the run failed.
    pub failed: String,
    /// Put on every PR Paid opens.
    pub pr: String,
}

impl Default for LabelConfig {
    fn default() -> Self {
        Self {
            in_progress: "paid-in-progress".into(),
            done: "paid-done".into(),
            failed: "paid-failed".into(),
            pr: "paid-generated".into(),
        }
    }
}

/// A project's preferred model and budgets (USD), kept with the project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectSettings {
    /// The model the project prefers (the model selector's first choice).
    pub model: Option<String>,
    /// The most one run may spend.
    pub budget_usd_per_run: Option<f64>,
    /// The most the project may spend in a calendar month (UTC).
    pub budget_usd_per_month: Option<f64>,
    /// Hosts other than the forge's that `clone_url` may name (e.g. a
    /// read-only mirror). They are cloned from without the forge token,
    /// which only ever goes to the forge's own host. Empty by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_clone_hosts: Vec<String>,
    /// A fork (`owner/name`) to push run branches to instead of the
    /// project's repository; pull requests are then opened from it
    /// (`owner:branch`). The agent's code then never lands on a branch of
    /// the project's repository, where CI may run it with the repository's
    /// secrets. Default: none (push to `clone_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_remote: Option<String>,
    /// Where the fork is pushed: default `https://<forge host>/<push_remote>.git`.
    /// The same rules as `clone_url` apply (the forge's host, an
    /// allowlisted host, or a local path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_url: Option<String>,
}

/// A repository Paid works on, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Identifier.
    pub id: ProjectId,
    /// The repository on the forge.
    pub repo: RepoRef,
    /// Where to clone from (https URL, or a local path for tests). Never
    /// carries credentials.
    pub clone_url: String,
    /// The branch PRs target.
    pub default_branch: String,
    /// Labels that trigger work (`paid-build`, `paid-plan`).
    pub trigger_labels: Vec<String>,
    /// Forge logins whose issues may trigger runs (and whose review text
    /// and votes count). Each is pinned to the user id it has when Paid
    /// first sees it ([`crate::Catalog::pin_author`]): should the login
    /// later belong to a different account, that account is not trusted.
    /// Empty (and no [`Project::allowed_author_ids`]) means nobody.
    pub allowed_authors: Vec<String>,
    /// Forge user ids (GitHub's numeric `user.id`) trusted like
    /// [`Project::allowed_authors`], whatever their login.
    #[serde(default)]
    pub allowed_author_ids: Vec<u64>,
    /// The sandbox image.
    pub image: String,
    /// The agent kind, as registered with the engine.
    pub agent: String,
    /// Commands run in the sandbox after the agent (tests, lint).
    pub verify: Vec<String>,
    /// Glob patterns the policy would forbid that this project allows
    /// (e.g. `.github/workflows/**`).
    pub allowed_paths: Vec<String>,
    /// Issue labels.
    pub labels: LabelConfig,
    /// At most this many runs of this project at once.
    pub max_concurrent_runs: u32,
    /// When the project was added.
    pub created_at: Timestamp,
    /// Preferred model and budgets (flattened in JSON).
    #[serde(flatten, default)]
    pub settings: ProjectSettings,
}

impl Project {
    /// A project with the design's defaults, to adjust with struct update.
    pub fn new(id: ProjectId, repo: RepoRef, clone_url: impl Into<String>, now: Timestamp) -> Self {
        Self {
            id,
            repo,
            clone_url: clone_url.into(),
            default_branch: "main".into(),
            trigger_labels: vec!["paid-build".into()],
            allowed_authors: Vec::new(),
            allowed_author_ids: Vec::new(),
            image: "paid/agent:bookworm".into(),
            agent: "command".into(),
            verify: Vec::new(),
            allowed_paths: Vec::new(),
            labels: LabelConfig::default(),
            max_concurrent_runs: 2,
            created_at: now,
            settings: ProjectSettings::default(),
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str, message: &str| {
            Err(crate::Error::InvalidInput { what: format!("project.{what}"), message: message.into() })
        };
        for (key, v) in [
            ("budget_usd_per_run", self.settings.budget_usd_per_run),
            ("budget_usd_per_month", self.settings.budget_usd_per_month),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return bad(key, "must be a positive number of USD");
            }
        }
        if self.trigger_labels.is_empty() || self.trigger_labels.iter().any(|l| l.trim().is_empty()) {
            return bad("trigger_labels", "at least one non-empty label is required");
        }
        if self.clone_url.trim().is_empty() {
            return bad("clone_url", "must not be empty");
        }
        if self.clone_url.contains('@') && self.clone_url.contains("://") {
            return bad("clone_url", "must not carry credentials; tokens are supplied by the forge configuration");
        }
        if let Some(h) =
            self.settings.allowed_clone_hosts.iter().find(|h| {
                h.trim().is_empty() || h.contains(['/', '@', ':', '\\']) || h.chars().any(char::is_whitespace)
            })
        {
            return bad("allowed_clone_hosts", &format!("{h:?} is not a host name (e.g. \"mirror.example.com\")"));
        }
        if self.image.trim().is_empty() {
            return bad("image", "must not be empty");
        }
        if self.default_branch.trim().is_empty() {
            return bad("default_branch", "must not be empty");
        }
        if self.max_concurrent_runs == 0 {
            return bad("max_concurrent_runs", "must be at least 1");
        }
        if let Some(model) = &self.settings.model
            && let Err(crate::Error::InvalidInput { message, .. }) = crate::validate_model_name(model)
        {
            return bad("model", &message);
        }
        if let Some(fork) = &self.settings.push_remote
            && RepoRef::parse(fork).is_err()
        {
            return bad("push_remote", &format!("{fork:?} is not a repository as owner/name"));
        }
        if self.settings.push_url.is_some() && self.settings.push_remote.is_none() {
            return bad("push_url", "needs push_remote, the fork's owner/name (pull requests are opened from it)");
        }
        Ok(())
    }

    /// The fork run branches are pushed to, when
    /// [`ProjectSettings::push_remote`] is set.
    pub fn push_fork(&self) -> Option<RepoRef> {
        self.settings.push_remote.as_deref().and_then(|f| RepoRef::parse(f).ok())
    }

    /// The pull request head for `branch`: `owner:branch` when the branch is
    /// pushed to a fork, else the branch itself.
    pub fn pr_head(&self, branch: &str) -> String {
        match self.push_fork() {
            Some(fork) => format!("{}:{branch}", fork.owner),
            None => branch.to_string(),
        }
    }

    /// Checks `clone_url` against the forge whose web host is `forge_host`
    /// (e.g. `github.com`): an `https://` (or `http://`) URL must be on that
    /// host or on one of [`ProjectSettings::allowed_clone_hosts`]; local
    /// paths and `file://` URLs are allowed (they never get a token); ssh
    /// URLs (`ssh://`, `git@host:path`) and other schemes are refused, since
    /// the forge token is only for https.
    pub fn validate_clone_url(&self, forge_host: &str) -> crate::Result<()> {
        self.check_remote_url("project.clone_url", &self.clone_url, forge_host)?;
        match &self.settings.push_url {
            Some(url) => self.check_remote_url("project.push_url", url, forge_host),
            None => Ok(()),
        }
    }

    /// The rules of [`Project::validate_clone_url`] for one URL.
    fn check_remote_url(&self, what: &str, url: &str, forge_host: &str) -> crate::Result<()> {
        let bad = |message: String| Err(crate::Error::InvalidInput { what: what.into(), message });
        let url = url.trim();
        // For messages: the URL without any `user:password@`.
        let shown = match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let (authority, tail) = rest.split_at(end);
                format!("{scheme}://{}{tail}", authority.rsplit_once('@').map_or(authority, |(_, h)| h))
            }
            None => url.to_string(),
        };
        let ssh = || {
            bad(format!(
                "{shown:?} is an ssh URL; Paid clones and pushes over https with the forge token, e.g. \
                 https://{forge_host}/{}/{}.git",
                self.repo.owner, self.repo.name
            ))
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            // No scheme: a local path, unless it is scp-like `[user@]host:path`
            // (a colon before any slash; `C:\` is a drive letter).
            let colon = url.find(':');
            let slash = url.find(['/', '\\']);
            let drive = colon == Some(1) && url.as_bytes().first().is_some_and(u8::is_ascii_alphabetic);
            return match colon {
                Some(c) if !drive && slash.is_none_or(|s| c < s) => ssh(),
                _ => Ok(()),
            };
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => Ok(()),
            "https" | "http" => {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                let host = match host_port.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or_default(),
                    None => host_port.split(':').next().unwrap_or_default(),
                };
                let same = |h: &str| h.trim().trim_end_matches('.').eq_ignore_ascii_case(host.trim_end_matches('.'));
                if host.is_empty() {
                    return bad(format!("{shown:?} has no host"));
                }
                if same(forge_host) || self.settings.allowed_clone_hosts.iter().any(|h| same(h)) {
                    return Ok(());
                }
                bad(format!(
                    "{shown:?} is on {host:?}, not on the forge's host {forge_host:?}; to clone from it (without the \
                     forge token, which only goes to {forge_host:?}), add {host:?} to the project's \
                     allowed_clone_hosts"
                ))
            }
            "ssh" | "git+ssh" | "ssh+git" => ssh(),
            other => bad(format!(
                "{shown:?} uses {other}://; use https://{forge_host}/{}/{}.git, a local path or a file:// URL",
                self.repo.owner, self.repo.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_model_must_be_a_model_name() {
        let mut p = Project::new(
            ProjectId(uuid::Uuid::nil()),
            RepoRef::new("acme", "widgets"),
            "/srv/x.git",
            chrono::Utc::now(),
        );
        p.settings.model = Some("claude-sonnet-4-5".into());
        p.validate().unwrap();
        for bad in ["gpt 5".to_string(), "gpt-5\nfake_metric 1".to_string(), "m".repeat(1000)] {
            p.settings.model = Some(bad.clone());
            match p.validate() {
                Err(crate::Error::InvalidInput { what, .. }) => assert_eq!(what, "project.model", "{bad:?}"),
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
    }
}
