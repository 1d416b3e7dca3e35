//! Loading `paid.toml`: a project's clone URL must be on the forge's web
//! host (the API's, `api.` dropped) unless its `allowed_clone_hosts` lists
//! the URL's host; ssh URLs are refused. The default clone URL is on the
//! forge's host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use paid_server::Config;
use paid_server::config::ConfigError;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/paid/paid.toml"), text, &BTreeMap::new())
}

fn project(github: &str, extra: &str) -> String {
    format!("{github}\n[[projects]]\nrepo = \"acme/widgets\"\nallowed_authors = [\"alice\"]\n{extra}\n")
}

const GHE: &str = "[github]\napi_url = \"https://ghe.example.com/api/v3\"";

#[test]
fn the_default_clone_url_is_on_the_forge_host() {
    let c = parse(&project("", "")).unwrap();
    assert_eq!(c.projects[0].clone_url, "https://github.com/acme/widgets.git");
    assert!(c.projects[0].allowed_clone_hosts.is_empty());
    let c = parse(&project(GHE, "")).unwrap();
    assert_eq!(c.projects[0].clone_url, "https://ghe.example.com/acme/widgets.git");
}

#[test]
fn a_clone_url_on_another_host_is_refused_naming_the_setting() {
    let e = parse(&project("", "clone_url = \"https://gitlab.com/acme/widgets.git\"")).unwrap_err();
    assert_eq!(e.key, "projects[0].clone_url", "{e}");
    assert!(e.reason.contains("allowed_clone_hosts") && e.reason.contains("gitlab.com"), "{e}");
    // An enterprise forge's projects cannot clone from github.com either.
    let e = parse(&project(GHE, "clone_url = \"https://github.com/acme/widgets.git\"")).unwrap_err();
    assert_eq!(e.key, "projects[0].clone_url", "{e}");
    let ok = parse(&project(GHE, "clone_url = \"https://ghe.example.com/acme/widgets.git\"")).unwrap();
    assert_eq!(ok.projects[0].clone_url, "https://ghe.example.com/acme/widgets.git");
}

#[test]
fn an_allowlisted_host_is_accepted_and_kept_with_the_project() {
    let c = parse(&project(
        "",
        "clone_url = \"https://mirror.example.com/acme/widgets.git\"\nallowed_clone_hosts = [\"mirror.example.com\"]",
    ))
    .unwrap();
    let spec = &c.projects[0];
    assert_eq!(spec.allowed_clone_hosts, vec!["mirror.example.com"]);
    let stored = spec.to_project(paid_core::ProjectId(uuid::Uuid::nil()), chrono::Utc::now());
    assert_eq!(stored.settings.allowed_clone_hosts, vec!["mirror.example.com"]);
    stored.validate_clone_url("github.com").unwrap();
}

#[test]
fn ssh_clone_urls_are_refused() {
    for url in ["git@github.com:acme/widgets.git", "ssh://git@github.com/acme/widgets.git"] {
        let e = parse(&project("", &format!("clone_url = \"{url}\""))).unwrap_err();
        assert_eq!(e.key, "projects[0].clone_url", "{e}");
        assert!(e.reason.contains("ssh"), "{e}");
    }
}

#[test]
fn local_paths_stay_allowed() {
    for url in ["/srv/git/widgets.git", "file:///srv/git/widgets.git"] {
        let c = parse(&project("", &format!("clone_url = \"{url}\""))).unwrap();
        assert_eq!(c.projects[0].clone_url, url);
    }
}

#[test]
fn a_bad_allowlist_entry_is_named() {
    let e = parse(&project("", "allowed_clone_hosts = [\"https://mirror.example.com\"]")).unwrap_err();
    assert_eq!(e.key, "projects[0].allowed_clone_hosts", "{e}");
}
