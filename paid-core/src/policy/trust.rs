use crate::{Error, Project, Result};

/// Whether `author` may trigger runs on `project`. Logins compare
/// case-insensitively, as on GitHub. An empty allowlist trusts nobody.
pub fn is_trusted(project: &Project, author: &str) -> bool {
    project.allowed_authors.iter().any(|a| a.eq_ignore_ascii_case(author))
}

/// [`is_trusted`], as a typed error naming the author and the allowlist.
pub fn require_trusted(project: &Project, issue: u64, author: &str) -> Result<()> {
    if is_trusted(project, author) {
        Ok(())
    } else {
        Err(Error::Untrusted { issue, author: author.to_string(), allowed: project.allowed_authors.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProjectId, RepoRef};

    fn project(allowed: &[&str]) -> Project {
        let mut p = Project::new(ProjectId(uuid::Uuid::nil()), RepoRef::new("o", "r"), "/tmp/r", chrono::Utc::now());
        p.allowed_authors = allowed.iter().map(|s| s.to_string()).collect();
        p
    }

    #[test]
    fn allowlisted_authors_are_trusted_case_insensitively() {
        assert!(is_trusted(&project(&["Octocat"]), "octocat"));
        assert!(!is_trusted(&project(&["octocat"]), "mallory"));
        assert!(!is_trusted(&project(&[]), "octocat"));
    }

    #[test]
    fn untrusted_error_names_author_and_allowlist() {
        let err = require_trusted(&project(&["alice"]), 7, "mallory").unwrap_err();
        assert_eq!(
            err.to_string(),
            "issue #7 was opened by untrusted author \"mallory\"; only [\"alice\"] may trigger runs"
        );
    }
}
