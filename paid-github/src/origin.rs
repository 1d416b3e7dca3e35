//! [`WebOrigin`]: where a GitHub serves its repositories (its web host),
//! derived from the URL of its REST API. The git token is only ever sent
//! there, and projects clone from there unless they allowlist another host.

use crate::error::{Error, Result};

/// The scheme, host and port a GitHub serves repositories on, e.g.
/// `https://github.com` for the API at `https://api.github.com`, or
/// `https://ghe.example.com` for a GitHub Enterprise Server whose API is at
/// `https://ghe.example.com/api/v3`.
///
/// ```
/// use paid_github::WebOrigin;
///
/// let github = WebOrigin::from_api_base("https://api.github.com")?;
/// assert_eq!(github.to_string(), "https://github.com");
/// assert_eq!(github.host(), "github.com");
///
/// let ghe = WebOrigin::from_api_base("https://ghe.example.com/api/v3")?;
/// assert_eq!(ghe.to_string(), "https://ghe.example.com");
///
/// let fake = WebOrigin::from_api_base("http://127.0.0.1:8080")?;
/// assert_eq!(fake.to_string(), "http://127.0.0.1:8080");
/// # Ok::<(), paid_github::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebOrigin {
    https: bool,
    /// Lowercase; an IPv6 address without brackets.
    host: String,
    /// The effective port (443 or 80 when the URL names none).
    port: u16,
}

impl Default for WebOrigin {
    /// `https://github.com`.
    fn default() -> Self {
        Self::github()
    }
}

impl WebOrigin {
    /// `https://github.com`.
    pub fn github() -> Self {
        Self { https: true, host: "github.com".into(), port: 443 }
    }

    /// The web origin of the GitHub whose REST API is at `api_base`: the
    /// API's scheme, host and port, with a leading `api.` dropped from the
    /// host when the API is served at the root (`https://api.github.com`,
    /// `https://api.acme.ghe.com`). An API under a path
    /// (`https://ghe.example.com/api/v3`) shares its host with the web.
    pub fn from_api_base(api_base: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config { what: "base_uri", message: format!("{api_base:?}: {why}") };
        let endpoint = Endpoint::parse(api_base).ok_or_else(|| bad("not an absolute http(s) URL"))?;
        let at_root = endpoint.path.trim_end_matches('/').is_empty();
        let host = match endpoint.host.strip_prefix("api.") {
            Some(web) if at_root && !web.is_empty() => web.to_string(),
            _ => endpoint.host,
        };
        Ok(Self { https: endpoint.https, host, port: endpoint.port })
    }

    /// Parses an origin given directly, `https://host[:port]` (a path is
    /// ignored), for a forge whose git host differs from its API's.
    pub fn parse(origin: &str) -> Result<Self> {
        let endpoint = Endpoint::parse(origin).ok_or_else(|| Error::Config {
            what: "origin",
            message: format!("{origin:?} is not an absolute http(s) URL"),
        })?;
        Ok(Self { https: endpoint.https, host: endpoint.host, port: endpoint.port })
    }

    /// The host, lowercase, without port (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 or 80 unless the URL named another).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the origin is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `<origin>/<owner>/<name>.git`, the default clone URL of `repo`.
    pub fn clone_url(&self, repo: &paid_core::RepoRef) -> String {
        format!("{self}/{}/{}.git", repo.owner, repo.name)
    }

    /// Why the token must not be sent to `url`, or `None` when it may:
    /// `url` must be on this origin (same scheme, host and port), over
    /// https, or plain http to a loopback host (local test remotes). Local
    /// paths, `file://` and ssh URLs never get the token.
    pub(crate) fn token_refusal(&self, url: &str) -> Option<String> {
        let Some(endpoint) = Endpoint::parse(url) else {
            return Some(format!(
                "{} is not an http(s) URL; the token is only sent over https to {self}",
                crate::workspaces::redact(url)
            ));
        };
        if !endpoint.https && !is_loopback(&endpoint.host) {
            return Some(format!(
                "{} is plain http; the token is only sent over https (plain http only to a loopback host)",
                crate::workspaces::redact(url)
            ));
        }
        if endpoint.https != self.https || endpoint.host != self.host || endpoint.port != self.port {
            return Some(format!(
                "{} is not on the forge's host; the token is only sent to {self}",
                crate::workspaces::redact(url)
            ));
        }
        None
    }
}

impl std::fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let default_port = if self.https { 443 } else { 80 };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]", self.host)?;
        } else {
            write!(f, "{scheme}://{}", self.host)?;
        }
        if self.port != default_port {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Whether `host` (lowercase, IPv6 without brackets) is this machine.
pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The parts of an http(s) URL the token decision needs.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    /// `None` unless `url` is an absolute `http://` or `https://` URL with a host.
    fn parse(url: &str) -> Option<Self> {
        let uri: http::Uri = url.trim().parse().ok()?;
        let https = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Self { https, host, port, path: uri.path().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(api: &str) -> WebOrigin {
        WebOrigin::from_api_base(api).unwrap_or_else(|e| panic!("{api}: {e}"))
    }

    #[test]
    fn the_web_host_is_derived_from_the_api_url() {
        assert_eq!(origin("https://api.github.com"), WebOrigin::github());
        assert_eq!(origin("https://api.github.com/"), WebOrigin::github());
        assert_eq!(origin("https://API.GitHub.com"), WebOrigin::github());
        assert_eq!(origin("https://ghe.example.com/api/v3").to_string(), "https://ghe.example.com");
        assert_eq!(origin("https://ghe.example.com/api/v3").host(), "ghe.example.com");
        assert_eq!(origin("https://api.acme.ghe.com").to_string(), "https://acme.ghe.com");
        assert_eq!(origin("https://ghe.example.com:8443/api/v3").to_string(), "https://ghe.example.com:8443");
        assert_eq!(origin("http://127.0.0.1:8080").to_string(), "http://127.0.0.1:8080");
        assert_eq!(origin("http://[::1]:9000").to_string(), "http://[::1]:9000");
        assert_eq!(origin("http://[::1]:9000").host(), "::1");
        assert_eq!(WebOrigin::default().clone_url(&paid_core::RepoRef::new("o", "r")), "https://github.com/o/r.git");
        for bad in ["not a uri", "ftp://example.com", "github.com", ""] {
            assert!(
                matches!(WebOrigin::from_api_base(bad), Err(Error::Config { what: "base_uri", .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_token_goes_only_to_the_forge_over_https() {
        let github = WebOrigin::github();
        for ok in [
            "https://github.com/o/r.git",
            "https://github.com/o/r.git/info/refs?service=git-upload-pack",
            "https://GitHub.com:443/o/r.git",
            "https://x-access-token@github.com/o/r.git",
        ] {
            assert_eq!(github.token_refusal(ok), None, "{ok}");
        }
        for refused in [
            // Another host, or a look-alike.
            "https://gitlab.com/o/r.git",
            "https://github.com.evil.example/o/r.git",
            "https://evil.example/github.com/o/r.git",
            "https://api.github.com/o/r.git",
            // The right host on another port or in clear text.
            "https://github.com:8443/o/r.git",
            "http://github.com/o/r.git",
            // Plain http anywhere but loopback.
            "http://evil.example/o/r.git",
            // No token for local paths, file:// or ssh.
            "/srv/git/r.git",
            "file:///srv/git/r.git",
            "ssh://git@github.com/o/r.git",
            "git@github.com:o/r.git",
            "git://github.com/o/r.git",
            "",
        ] {
            let why = github.token_refusal(refused);
            assert!(why.is_some(), "the token would be sent to {refused:?}");
        }
        let why = github.token_refusal("http://user:pw@evil.example/o/r.git").unwrap_or_default();
        assert!(why.contains("plain http") && !why.contains("pw"), "{why}");
    }

    #[test]
    fn plain_http_is_only_for_a_loopback_origin_on_the_same_port() {
        let local = origin("http://127.0.0.1:8080");
        assert_eq!(local.token_refusal("http://127.0.0.1:8080/o/r.git"), None);
        for refused in [
            "http://127.0.0.1:8081/o/r.git",
            "http://localhost:8080/o/r.git",
            "http://127.0.0.2:8080/o/r.git",
            "https://127.0.0.1:8080/o/r.git",
            "http://[::1]:8080/o/r.git",
        ] {
            assert!(local.token_refusal(refused).is_some(), "{refused}");
        }
        let v6 = origin("http://[::1]:8080");
        assert_eq!(v6.token_refusal("http://[::1]:8080/o/r.git"), None);
        let named = origin("http://localhost:8080");
        assert_eq!(named.token_refusal("http://LOCALHOST:8080/o/r.git"), None);
        // An origin on plain http to another machine never gets the token.
        let clear = origin("http://ghe.internal/api/v3");
        assert!(clear.token_refusal("http://ghe.internal/o/r.git").is_some());
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1") && !is_loopback("localhost.evil.example"));
    }
}
