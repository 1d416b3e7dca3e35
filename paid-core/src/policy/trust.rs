//! Who may trigger runs, and whose review text and votes count.
//!
//! Trust goes by the forge's immutable numeric user id where the forge
//! reports one. A project names trusted authors by id
//! ([`Project::allowed_author_ids`]) or by login
//! ([`Project::allowed_authors`]); a login is pinned to the id it has when
//! Paid first sees it ([`crate::Catalog::pin_author`]), so an account that
//! later takes over a given-up login is not trusted. Logins stay for
//! display. A forge that reports no ids is trusted by login alone.

use crate::{Error, Project, Result};

/// Whether `login` is in the project's login allowlist (case-insensitively,
/// as on GitHub).
pub fn is_listed(project: &Project, login: &str) -> bool {
    project.allowed_authors.iter().any(|a| a.eq_ignore_ascii_case(login))
}

/// Whether an author may trigger runs on `project`: their `id` is in
/// [`Project::allowed_author_ids`], or their `login` is in
/// [`Project::allowed_authors`] and `pinned` (the id the store pinned that
/// login to, see [`crate::Catalog::pin_author`]) is their id. With no id
/// from the forge, a listed login is trusted only if it was never pinned.
/// Empty allowlists trust nobody.
pub fn is_trusted(project: &Project, login: &str, id: Option<u64>, pinned: Option<u64>) -> bool {
    if id.is_some_and(|id| project.allowed_author_ids.contains(&id)) {
        return true;
    }
    if !is_listed(project, login) {
        return false;
    }
    match (id, pinned) {
        (Some(id), Some(pinned)) => id == pinned,
        // The caller pins a listed login before asking.
        (Some(_), None) => false,
        // A forge without ids: the login is all there is, unless an id was
        // pinned for it, which this author cannot be shown to have.
        (None, pinned) => pinned.is_none(),
    }
}

/// [`is_trusted`], as a typed error naming the author and the allowlist.
pub fn require_trusted(project: &Project, issue: u64, login: &str, id: Option<u64>, pinned: Option<u64>) -> Result<()> {
    if is_trusted(project, login, id, pinned) {
        Ok(())
    } else {
        Err(Error::Untrusted { issue, author: login.to_string(), allowed: project.allowed_authors.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProjectId, RepoRef};

    fn project(allowed: &[&str], ids: &[u64]) -> Project {
        let mut p = Project::new(ProjectId(uuid::Uuid::nil()), RepoRef::new("o", "r"), "/tmp/r", chrono::Utc::now());
        p.allowed_authors = allowed.iter().map(|s| s.to_string()).collect();
        p.allowed_author_ids = ids.to_vec();
        p
    }

    #[test]
    fn allowlisted_logins_are_trusted_case_insensitively_with_their_pinned_id() {
        assert!(is_trusted(&project(&["Octocat"], &[]), "octocat", Some(1), Some(1)));
        assert!(!is_trusted(&project(&["octocat"], &[]), "mallory", Some(1), Some(1)));
        assert!(!is_trusted(&project(&[], &[]), "octocat", Some(1), Some(1)));
        assert!(is_listed(&project(&["Octocat"], &[]), "OCTOCAT"));
    }

    #[test]
    fn a_login_that_now_belongs_to_another_id_is_not_trusted() {
        let p = project(&["octocat"], &[]);
        assert!(is_trusted(&p, "octocat", Some(583231), Some(583231)));
        assert!(!is_trusted(&p, "octocat", Some(999), Some(583231)), "the login was re-registered");
        assert!(!is_trusted(&p, "octocat", Some(999), None), "not pinned: the caller pins first");
        assert!(!is_trusted(&p, "octocat", None, Some(583231)), "pinned, and the forge shows no id");
        assert!(is_trusted(&p, "octocat", None, None), "a forge without ids trusts logins");
    }

    #[test]
    fn allowlisted_ids_are_trusted_whatever_their_login() {
        let p = project(&[], &[583231]);
        assert!(is_trusted(&p, "octocat", Some(583231), None));
        assert!(is_trusted(&p, "renamed-octocat", Some(583231), None));
        assert!(!is_trusted(&p, "octocat", Some(1), None));
        assert!(!is_trusted(&p, "octocat", None, None), "an id allowlist needs the forge's id");
    }

    #[test]
    fn untrusted_error_names_author_and_allowlist() {
        let err = require_trusted(&project(&["alice"], &[]), 7, "mallory", Some(2), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "issue #7 was opened by untrusted author \"mallory\"; only [\"alice\"] may trigger runs"
        );
        assert!(require_trusted(&project(&["alice"], &[]), 7, "alice", Some(2), Some(2)).is_ok());
    }
}
