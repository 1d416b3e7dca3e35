//! Host-side push with force-with-lease semantics.
//!
//! The branch is pushed with a forcing refspec, but the push is vetted in
//! libgit2's push-negotiation callback, which sees what the remote branch
//! points at on the very connection that pushes (so there is no window
//! between a check and the push). The push goes ahead only when the remote
//! branch
//! - does not exist, or
//! - already points at our commit (pushing twice is a no-op), or
//! - is an ancestor of our commit (a fast-forward), or
//! - is exactly what Paid last saw there: the lease, `refs/paid/lease/<branch>`
//!   in the mirror, recorded when Paid pushed the branch or built a run on the
//!   remote's copy of it.
//!
//! Anything else means someone else pushed commits Paid has not seen, and the
//! push fails with [`Error::StaleBranch`] without touching the remote.

use std::cell::RefCell;
use std::path::Path;

use git2::{Oid, PushOptions, Repository};

use super::credentials::{Auth, NO_REDIRECTS, redact};
use super::mirror::REMOTE;
use super::worktree::branch_ref;
use crate::error::{Error, Result};

/// The mirror ref recording what Paid last saw on the remote for `branch`.
pub(crate) fn lease_ref(branch: &str) -> String {
    format!("refs/paid/lease/{branch}")
}

/// Pushes `branch` from the mirror at `mirror` to `url`.
pub(crate) fn push(mirror: &Path, url: &str, branch: &str, auth: &Auth) -> Result<()> {
    let local_ref = branch_ref(branch)?;
    let repo = Repository::open_bare(mirror).map_err(Error::git("open mirror", mirror))?;
    let local = repo.refname_to_id(&local_ref).map_err(Error::git("find branch", mirror))?;
    let lease = repo.refname_to_id(&lease_ref(branch)).ok();

    let stale: RefCell<Option<Oid>> = RefCell::new(None);
    let rejected: RefCell<Option<String>> = RefCell::new(None);
    let result = {
        let mut remote = repo.remote_anonymous(url).map_err(Error::git("open remote", mirror))?;
        let mut callbacks = auth.callbacks();
        callbacks.push_negotiation(|updates| {
            for update in updates {
                if update.dst_refname().ok() != Some(local_ref.as_str()) {
                    continue;
                }
                let current = update.src();
                let allowed = current.is_zero()
                    || current == local
                    || Some(current) == lease
                    || repo.graph_descendant_of(local, current).unwrap_or(false);
                if !allowed {
                    *stale.borrow_mut() = Some(current);
                    return Err(git2::Error::from_str("remote branch moved; refusing to overwrite it"));
                }
            }
            Ok(())
        });
        callbacks.push_update_reference(|_refname, status| {
            if let Some(message) = status {
                *rejected.borrow_mut() = Some(message.to_string());
            }
            Ok(())
        });
        let mut opts = PushOptions::new();
        opts.remote_callbacks(callbacks).follow_redirects(NO_REDIRECTS);
        remote.push(&[format!("+{local_ref}:{local_ref}")], Some(&mut opts))
    };
    if let Some(remote) = stale.into_inner() {
        return Err(Error::StaleBranch { branch: branch.to_string(), url: redact(url), remote: remote.to_string() });
    }
    if let Some(message) = rejected.into_inner() {
        return Err(Error::PushRejected { branch: branch.to_string(), url: redact(url), message });
    }
    result.map_err(|e| {
        let (url, message) = (redact(url), redact(e.message()));
        match e.class() {
            git2::ErrorClass::Net | git2::ErrorClass::Http | git2::ErrorClass::Ssl | git2::ErrorClass::Os => {
                Error::Remote { url, message }
            }
            _ => Error::PushRejected { branch: branch.to_string(), url, message },
        }
    })?;

    for (name, why) in
        [(lease_ref(branch), "paid: pushed"), (format!("refs/remotes/{REMOTE}/{branch}"), "paid: pushed")]
    {
        repo.reference(&name, local, true, why).map_err(Error::git("record pushed commit", mirror))?;
    }
    Ok(())
}
