//! `Project::validate_clone_url`: a clone URL must be on the forge's host
//! unless the project allowlists another; ssh is refused; local paths and
//! `file://` are fine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paid_core::{Error, Project, ProjectId, RepoRef};

fn project(url: &str, allowed: &[&str]) -> Project {
    let mut p = Project::new(ProjectId(uuid::Uuid::nil()), RepoRef::new("acme", "widgets"), url, chrono::Utc::now());
    p.settings.allowed_clone_hosts = allowed.iter().map(|h| h.to_string()).collect();
    p
}

fn refusal(url: &str, allowed: &[&str], forge: &str) -> String {
    match project(url, allowed).validate_clone_url(forge) {
        Err(Error::InvalidInput { what, message }) => {
            assert_eq!(what, "project.clone_url");
            message
        }
        other => panic!("{url:?} on forge {forge:?}: {other:?}"),
    }
}

#[test]
fn https_on_the_forge_host_is_allowed() {
    for url in [
        "https://github.com/acme/widgets.git",
        "https://GitHub.com/acme/widgets.git",
        "https://github.com:443/acme/widgets",
        "HTTPS://github.com/acme/widgets.git",
    ] {
        project(url, &[]).validate_clone_url("github.com").unwrap();
    }
    project("https://ghe.example.com/acme/widgets.git", &[]).validate_clone_url("ghe.example.com").unwrap();
    project("http://127.0.0.1:9000/acme/widgets.git", &[]).validate_clone_url("127.0.0.1").unwrap();
    project("http://[::1]:9000/acme/widgets.git", &[]).validate_clone_url("::1").unwrap();
}

#[test]
fn another_host_is_refused_naming_the_setting() {
    let why = refusal("https://gitlab.com/acme/widgets.git", &[], "github.com");
    assert!(why.contains("allowed_clone_hosts") && why.contains("\"gitlab.com\""), "{why}");
    for url in [
        "https://github.com.evil.example/acme/widgets.git",
        "https://evil.example/github.com/acme/widgets.git",
        "https://evil.example:443/acme/widgets.git",
        "http://evil.example/acme/widgets.git",
        "https://github.com@evil.example/acme/widgets.git",
    ] {
        refusal(url, &[], "github.com");
    }
    // The enterprise forge's projects cannot point at github.com either.
    refusal("https://github.com/acme/widgets.git", &[], "ghe.example.com");
}

#[test]
fn an_allowlisted_host_is_allowed() {
    let p = project("https://mirror.example.com/acme/widgets.git", &["mirror.example.com"]);
    p.validate().unwrap();
    p.validate_clone_url("github.com").unwrap();
    project("https://Mirror.Example.com/acme/widgets.git", &["mirror.example.com"])
        .validate_clone_url("github.com")
        .unwrap();
    // Only the hosts listed.
    refusal("https://other.example.com/acme/widgets.git", &["mirror.example.com"], "github.com");
}

#[test]
fn ssh_and_other_schemes_are_refused() {
    for url in [
        "ssh://git@github.com/acme/widgets.git",
        "git+ssh://git@github.com/acme/widgets.git",
        "git@github.com:acme/widgets.git",
        "github.com:acme/widgets.git",
    ] {
        let why = refusal(url, &[], "github.com");
        assert!(why.contains("ssh") && why.contains("https://github.com/acme/widgets.git"), "{url}: {why}");
    }
    // Allowlisting the host does not make ssh acceptable.
    refusal("git@mirror.example.com:acme/widgets.git", &["mirror.example.com"], "github.com");
    for url in ["git://github.com/acme/widgets.git", "ftp://github.com/acme/widgets.git"] {
        refusal(url, &[], "github.com");
    }
}

#[test]
fn local_paths_and_file_urls_are_allowed() {
    for url in [
        "/srv/git/widgets.git",
        "./widgets",
        "widgets.git",
        "../repos/with:colon",
        "C:\\repos\\widgets",
        "file:///srv/git/widgets.git",
        "FILE:///srv/git/widgets.git",
    ] {
        project(url, &[]).validate_clone_url("github.com").unwrap();
    }
}

#[test]
fn credentials_in_the_url_never_show_in_the_refusal() {
    let why = refusal("https://user:hunter2@gitlab.com/acme/widgets.git", &[], "github.com");
    assert!(!why.contains("hunter2") && why.contains("https://gitlab.com/acme/widgets.git"), "{why}");
}

#[test]
fn allowlist_entries_must_be_host_names() {
    for bad in ["", " ", "https://mirror.example.com", "mirror.example.com/acme", "user@mirror", "mirror:22"] {
        let p = project("https://github.com/acme/widgets.git", &[bad]);
        match p.validate() {
            Err(Error::InvalidInput { what, .. }) => assert_eq!(what, "project.allowed_clone_hosts", "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn old_settings_without_the_allowlist_still_parse() {
    let settings: paid_core::ProjectSettings = serde_json::from_str(r#"{"budget_usd_per_run": 2.0}"#).unwrap();
    assert!(settings.allowed_clone_hosts.is_empty());
    // And an empty allowlist is not written, so stored rows look as before.
    let json = serde_json::to_value(&settings).unwrap();
    assert!(json.get("allowed_clone_hosts").is_none(), "{json}");
    let with = paid_core::ProjectSettings { allowed_clone_hosts: vec!["mirror.example.com".into()], ..settings };
    let back: paid_core::ProjectSettings = serde_json::from_value(serde_json::to_value(&with).unwrap()).unwrap();
    assert_eq!(back, with);
}

#[test]
fn a_push_remote_is_a_fork_under_the_same_host_rules() {
    let mut p = project("https://github.com/acme/widgets.git", &[]);
    assert_eq!(p.pr_head("paid/1-fix"), "paid/1-fix");
    p.settings.push_remote = Some("paid-bot/widgets".into());
    p.validate().unwrap();
    assert_eq!(p.push_fork(), Some(RepoRef::new("paid-bot", "widgets")));
    assert_eq!(p.pr_head("paid/1-fix"), "paid-bot:paid/1-fix");
    p.validate_clone_url("github.com").unwrap();

    // The fork's URL follows the clone URL's rules.
    p.settings.push_url = Some("https://evil.example/paid-bot/widgets.git".into());
    match p.validate_clone_url("github.com") {
        Err(Error::InvalidInput { what, message }) => {
            assert_eq!(what, "project.push_url");
            assert!(message.contains("allowed_clone_hosts"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    p.settings.push_url = Some("/srv/git/fork.git".into());
    p.validate_clone_url("github.com").unwrap();

    // A fork must be owner/name; a push_url needs the fork.
    p.settings.push_remote = Some("not a repo".into());
    assert!(matches!(p.validate(), Err(Error::InvalidInput { what, .. }) if what == "project.push_remote"));
    p.settings.push_remote = None;
    assert!(matches!(p.validate(), Err(Error::InvalidInput { what, .. }) if what == "project.push_url"));
}
