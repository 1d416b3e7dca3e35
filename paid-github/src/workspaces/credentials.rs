//! Credentials for fetch and push, handed to libgit2 through a callback so
//! the token is never part of a URL, a remote or any config on disk.
//!
//! The token is pinned to the forge's web origin ([`WebOrigin`]): the
//! callback hands it out only when libgit2 asks for that origin over https
//! (or plain http to a loopback origin, for local test remotes). libgit2
//! passes the URL it is authenticating to, which after a redirect is the
//! redirect's target, so a redirect elsewhere gets a refusal, never the
//! token. Fetches and pushes also set [`git2::RemoteRedirect::None`]
//! ([`NO_REDIRECTS`]): libgit2 then follows no redirect to another host name
//! at any stage (its default follows one on the first request), so such a
//! host is never contacted at all. libgit2 still follows a redirect to the
//! same host name (another port, or http to https); there the callback is
//! asked for the new URL and refuses unless it is the forge's exact origin.

use git2::{Cred, CredentialType, RemoteCallbacks, RemoteRedirect};
use secrecy::{ExposeSecret, SecretString};

use crate::origin::WebOrigin;

/// How fetches and pushes treat redirects: never to another host name
/// (libgit2 still follows one to the same host name, e.g. to another port
/// or from http to https; the callback guards those).
pub(crate) const NO_REDIRECTS: RemoteRedirect = RemoteRedirect::None;

/// The username GitHub expects with an installation or personal token.
pub(crate) const DEFAULT_USERNAME: &str = "x-access-token";

/// What to answer when a remote asks for credentials.
#[derive(Clone)]
pub(crate) struct Auth {
    pub token: Option<SecretString>,
    pub username: String,
    /// The only origin the token is sent to.
    pub origin: WebOrigin,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("origin", &self.origin.to_string())
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Auth {
    /// Callbacks answering one credentials request with the token (HTTP
    /// basic auth, as GitHub wants for tokens). A second request in the same
    /// operation means the token was refused; it fails instead of looping.
    /// A request for any URL but the forge's origin (see
    /// [`WebOrigin::token_refusal`]) fails without the token.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        if let Some(token) = &self.token {
            let mut asked = false;
            cb.credentials(move |url, _user, allowed| {
                if let Some(why) = self.origin.token_refusal(url) {
                    tracing::warn!(url = %redact(url), origin = %self.origin, "refused to send the forge token");
                    return Err(git2::Error::from_str(&format!("refusing to send the forge token: {why}")));
                }
                if asked {
                    return Err(git2::Error::from_str(
                        "the remote refused the configured token; check that it is valid and may push to this repository",
                    ));
                }
                asked = true;
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    Cred::userpass_plaintext(&self.username, token.expose_secret())
                } else {
                    Err(git2::Error::from_str(
                        "the remote asks for credentials other than a token (ssh?); use an https clone URL",
                    ))
                }
            });
        }
        cb
    }
}

/// `url` without any `user:password@` part, for messages and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_strips_userinfo_only() {
        assert_eq!(redact("https://x-access-token:ghp_secret@github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(redact("https://user@github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(redact("https://github.com/o/r@x.git"), "https://github.com/o/r@x.git");
        assert_eq!(redact("/tmp/remote.git"), "/tmp/remote.git");
        assert_eq!(redact("file:///tmp/remote.git"), "file:///tmp/remote.git");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let auth = Auth {
            token: Some("ghp_secret".to_string().into()),
            username: DEFAULT_USERNAME.into(),
            origin: WebOrigin::github(),
        };
        assert!(!format!("{auth:?}").contains("ghp_secret"));
    }
}
