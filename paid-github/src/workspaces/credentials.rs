//! Credentials for fetch and push, handed to libgit2 through a callback so
//! the token is never part of a URL, a remote or any config on disk.

use git2::{Cred, CredentialType, RemoteCallbacks};
use secrecy::{ExposeSecret, SecretString};

/// The username GitHub expects with an installation or personal token.
pub(crate) const DEFAULT_USERNAME: &str = "x-access-token";

/// What to answer when a remote asks for credentials.
#[derive(Clone)]
pub(crate) struct Auth {
    pub token: Option<SecretString>,
    pub username: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Auth {
    /// Callbacks answering one credentials request with the token (HTTP
    /// basic auth, as GitHub wants for tokens). A second request in the same
    /// operation means the token was refused; it fails instead of looping.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        if let Some(token) = &self.token {
            let mut asked = false;
            cb.credentials(move |_url, _user, allowed| {
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
        let auth = Auth { token: Some("ghp_secret".to_string().into()), username: DEFAULT_USERNAME.into() };
        assert!(!format!("{auth:?}").contains("ghp_secret"));
    }
}
