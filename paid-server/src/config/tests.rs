//! Unit tests of loading and checking `paid.toml`.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/paid/paid.toml"), text, &BTreeMap::new())
}

const MINIMAL: &str = r#"
[[projects]]
repo = "acme/widgets"
allowed_authors = ["alice"]
"#;

#[test]
fn the_example_parses() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.poll_interval, Duration::from_secs(60));
    assert_eq!(c.projects.len(), 1);
}

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.store, StoreUrl::Sqlite(PathBuf::from("/etc/paid/paid-data/paid.db")));
    assert_eq!(c.api.bind.to_string(), "127.0.0.1:8700");
    assert_eq!(c.projects[0].clone_url, "https://github.com/acme/widgets.git");
    assert_eq!(c.projects[0].trigger_labels, vec!["paid-build"]);
    assert!(c.github.sub_issues, "sub-issues are on unless said otherwise");
}

#[test]
fn a_forge_without_sub_issues_is_configured_not_guessed() {
    let c = parse(&format!("[github]\nsub_issues = false\n{MINIMAL}")).unwrap();
    assert!(!c.github.sub_issues);
    let e = parse(&format!("[github]\nsub_issues = \"no\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "github.sub_issues", "{e}");
}

#[test]
fn env_overrides_win_and_are_typed() {
    let env = BTreeMap::from([
        ("PAID_STORE_URL".to_string(), "/tmp/x.db".to_string()),
        ("PAID_POLL_INTERVAL_SECS".to_string(), "120".to_string()),
        ("PAID_DOCKER_ENDPOINTS".to_string(), "tcp://a:2375, tcp://b:2375".to_string()),
        ("PAID_DISK_EMERGENCY_PERCENT".to_string(), "99.5".to_string()),
    ]);
    let c = Config::parse(Path::new("/etc/paid/paid.toml"), MINIMAL, &env).unwrap();
    assert_eq!(c.store, StoreUrl::Sqlite(PathBuf::from("/tmp/x.db")));
    assert_eq!(c.poll_interval, Duration::from_secs(120));
    assert_eq!(c.docker.endpoints, vec!["tcp://a:2375", "tcp://b:2375"]);
    assert_eq!(c.disk.emergency_percent, 99.5);
}

#[test]
fn bad_env_value_names_the_variable() {
    let env = BTreeMap::from([("PAID_POLL_INTERVAL_SECS".to_string(), "soon".to_string())]);
    let e = Config::parse(Path::new("/etc/paid/paid.toml"), MINIMAL, &env).unwrap_err();
    assert_eq!(e.key, "PAID_POLL_INTERVAL_SECS");
    assert!(e.reason.contains("not a whole number"), "{e}");
}

#[test]
fn log_retention_defaults_to_30_days_and_must_be_positive() {
    assert_eq!(parse(MINIMAL).unwrap().disk.log_retention, Duration::from_secs(30 * 86_400));
    let c = parse(&format!("[disk]\nlog_retention_days = 7\n{MINIMAL}")).unwrap();
    assert_eq!(c.disk.log_retention, Duration::from_secs(7 * 86_400));
    let e = parse(&format!("[disk]\nlog_retention_days = 0\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "disk.log_retention_days");
}

#[test]
fn poll_interval_minimum_and_the_test_override() {
    let e = parse(&format!("poll_interval_secs = 5\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "poll_interval_secs");
    assert!(e.reason.contains("minimum of 60 s"), "{e}");
    let with = |ms: &str| {
        let env = BTreeMap::from([(TEST_POLL_INTERVAL_ENV.to_string(), ms.to_string())]);
        Config::parse(Path::new("/x/paid.toml"), &format!("poll_interval_secs = 5\n{MINIMAL}"), &env)
    };
    if cfg!(feature = "test-hooks") {
        assert_eq!(with("200").unwrap().poll_interval, Duration::from_millis(200));
        let e = with("0").unwrap_err();
        assert_eq!(e.key, TEST_POLL_INTERVAL_ENV);
        assert!(e.reason.contains("at least 1 ms"), "{e}");
    } else {
        // A production build refuses the hook instead of obeying it.
        let e = with("200").unwrap_err();
        assert_eq!(e.key, TEST_POLL_INTERVAL_ENV);
        assert!(e.reason.contains("test hook"), "{e}");
    }
}

#[test]
fn the_webhook_secret_is_named_never_inline() {
    let c = parse(&format!("[github]\nwebhook_secret_env = \"PAID_WEBHOOK_SECRET\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.github.webhook_secret_env.as_deref(), Some("PAID_WEBHOOK_SECRET"));
    assert_eq!(c.github.webhook_secret_file, None);
    let c = parse(&format!("[github]\nwebhook_secret_file = \"hook.secret\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.github.webhook_secret_file, Some(PathBuf::from("/etc/paid/hook.secret")));
    assert_eq!(parse(MINIMAL).unwrap().github.webhook_secret_env, None);
    let e = parse(&format!("[github]\nwebhook_secret = \"s3cret\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "github.webhook_secret");
    assert!(e.reason.contains("github.webhook_secret_env"), "{e}");
    let e = parse(&format!("[github]\nwebhook_secret_env = \"not a name\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "github.webhook_secret_env");
}

#[test]
fn inline_secrets_are_refused_with_file_key_and_reason() {
    let e = parse(&format!("[github]\ntoken = \"ghp_x\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.file, PathBuf::from("/etc/paid/paid.toml"));
    assert_eq!(e.key, "github.token");
    assert!(e.reason.contains("never written inline"), "{e}");
    let e = parse(&format!("[providers.anthropic]\nkey = \"sk\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "providers.anthropic.key");
    assert!(e.reason.contains("key_env"), "{e}");
}

#[test]
fn unknown_and_mistyped_keys_are_named() {
    let e = parse(&format!("pol_interval_secs = 60\n{MINIMAL}")).unwrap_err();
    assert!(e.reason.contains("unknown field `pol_interval_secs`"), "{e}");
    let e = parse("[[projects]]\nrepo = \"acme/widgets\"\nallowed_authors = \"alice\"\n").unwrap_err();
    assert_eq!(e.key, "projects[0].allowed_authors");
    let e = parse("[[projects]]\nrepo = \"widgets\"\nallowed_authors = [\"a\"]\n").unwrap_err();
    assert_eq!(e.key, "projects[0].repo");
    let e = parse("[docker]\nendpont = \"x\"\n").unwrap_err();
    assert!(e.key.starts_with("docker"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = parse("data_dir = \n").unwrap_err();
    assert!(e.key.starts_with("line 1"), "{e}");
    assert!(e.to_string().contains("/etc/paid/paid.toml"), "{e}");
}

#[test]
fn agents_are_scripts_or_plugins() {
    let c = parse(&format!(
        "[agents.fixer]\nscript = \"true\"\n[agents.my-cli]\ncommand = \"my-cli {{{{ prompt_file }}}}\"\n{MINIMAL}"
    ))
    .unwrap();
    assert!(matches!(c.agents["fixer"], AgentSpec::Command { .. }));
    assert!(matches!(c.agents["my-cli"], AgentSpec::Plugin(_)));
    let e = parse(&format!("[agents.x]\nfoo = 1\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "agents.x");
}

#[test]
fn postgres_urls_are_not_printed_with_passwords() {
    let c = parse(&format!("[store]\nurl = \"postgres://paid:hunter2@db/paid\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.store.to_string(), "postgres://[redacted]@db/paid");
}

#[test]
fn project_comparisons_are_checked_with_file_key_and_reason() {
    let c = parse(&format!("{MINIMAL}[projects.compare]\nmodels = [\"m-a\", \"m-b\"]\nrule = \"human\"\n")).unwrap();
    let spec = c.projects[0].compare.as_ref().unwrap();
    assert_eq!(spec.names(), ["c1-m-a", "c2-m-b"]);
    assert_eq!(spec.rule, paid_core::engine::SelectionRule::Human);
    assert_eq!(parse(MINIMAL).unwrap().projects[0].compare, None);
    for (body, key, reason) in [
        ("models = [\"only-one\"]", "projects[0].compare.models", "2 to 8 models"),
        ("models = [\"a\", \"a\"]", "projects[0].compare.models", "listed twice"),
        ("models = [\"a\", \"b\"]\nrule = \"random\"", "projects[0].compare.rule", "neither"),
        ("models = [\"a\", \"b\"]\nranking = [\"speed\"]", "projects[0].compare.ranking", "unknown criterion"),
        ("models = [\"a\", \"b\"]\nrules = \"best\"", "projects[0].compare", "unknown field `rules`"),
        ("models = \"a,b\"", "projects[0].compare.models", "expected"),
    ] {
        let e = parse(&format!("{MINIMAL}[projects.compare]\n{body}\n")).unwrap_err();
        assert_eq!(e.file, PathBuf::from("/etc/paid/paid.toml"), "{e}");
        assert!(e.key.starts_with(key), "{body}: {e}");
        assert!(e.reason.contains(reason), "{body}: {e}");
    }
    let models = "[engine]\n[[engine.models]]\nprovider = \"anthropic\"\nmodel = \"m-a\"\n";
    let e = parse(&format!("{models}{MINIMAL}[projects.compare]\nmodels = [\"m-a\", \"m-z\"]\n")).unwrap_err();
    assert_eq!(e.key, "projects[0].compare.models");
    assert!(e.reason.contains("\"m-z\" is not one of engine.models"), "{e}");
}

#[test]
fn a_store_schema_is_for_postgres_only() {
    let c = parse(&format!("[store]\nurl = \"postgres://db/paid\"\nschema = \"tenant_a\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.store_schema.as_deref(), Some("tenant_a"));
    assert_eq!(parse(MINIMAL).unwrap().store_schema, None);
    let e = parse(&format!("[store]\nurl = \"x.db\"\nschema = \"tenant_a\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.key, "store.schema");
}

#[test]
fn listener_and_webhook_hardening_settings_default_parse_and_take_env_overrides() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.api.metrics_bind, None, "/metrics stays on the API listener by default");
    assert!(!c.api.metrics_auth, "/metrics is unauthenticated by default");
    assert_eq!(c.api.public_url, None);
    assert_eq!(c.github.webhook_max_body_bytes, 1024 * 1024);
    assert_eq!(c.github.webhook_max_concurrency, 16);
    assert_eq!(c.github.webhook_replay_window, Duration::from_secs(3600));

    let c = parse(&format!(
        "[api]\nmetrics_bind = \"127.0.0.1:9700\"\nmetrics_auth = true\npublic_url = \"https://paid.example.com\"\n\
         [github]\nwebhook_max_body_bytes = 2048\nwebhook_max_concurrency = 2\nwebhook_replay_window_secs = 600\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.api.metrics_bind.map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9700"));
    assert!(c.api.metrics_auth);
    assert_eq!(c.api.public_url.as_ref().and_then(|u| u.host_str()), Some("paid.example.com"));
    assert_eq!(
        (c.github.webhook_max_body_bytes, c.github.webhook_max_concurrency, c.github.webhook_replay_window),
        (2048, 2, Duration::from_secs(600))
    );

    let env = BTreeMap::from([
        ("PAID_API_METRICS_BIND".to_string(), "127.0.0.1:9701".to_string()),
        ("PAID_API_METRICS_AUTH".to_string(), "true".to_string()),
        ("PAID_API_PUBLIC_URL".to_string(), "http://paid.internal:8080".to_string()),
        ("PAID_GITHUB_WEBHOOK_MAX_BODY_BYTES".to_string(), "4096".to_string()),
        ("PAID_GITHUB_WEBHOOK_MAX_CONCURRENCY".to_string(), "3".to_string()),
        ("PAID_GITHUB_WEBHOOK_REPLAY_WINDOW_SECS".to_string(), "120".to_string()),
    ]);
    let c = Config::parse(Path::new("/etc/paid/paid.toml"), MINIMAL, &env).unwrap();
    assert_eq!(c.api.metrics_bind.map(|a| a.port()), Some(9701));
    assert!(c.api.metrics_auth);
    assert_eq!(c.api.public_url.as_ref().and_then(|u| u.port()), Some(8080));
    assert_eq!(
        (c.github.webhook_max_body_bytes, c.github.webhook_max_concurrency, c.github.webhook_replay_window),
        (4096, 3, Duration::from_secs(120))
    );
    let env = BTreeMap::from([("PAID_API_METRICS_AUTH".to_string(), "maybe".to_string())]);
    let e = Config::parse(Path::new("/etc/paid/paid.toml"), MINIMAL, &env).unwrap_err();
    assert_eq!(e.key, "PAID_API_METRICS_AUTH", "{e}");

    for (text, key) in [
        ("[api]\nmetrics_bind = \"127.0.0.1:8700\"\n", "api.metrics_bind"),
        ("[api]\nmetrics_bind = \"nowhere\"\n", "api.metrics_bind"),
        ("[api]\npublic_url = \"paid.example.com\"\n", "api.public_url"),
        ("[api]\npublic_url = \"ftp://paid.example.com\"\n", "api.public_url"),
        ("[api]\npublic_url = \"https://user:pw@paid.example.com\"\n", "api.public_url"),
        ("[github]\nwebhook_max_body_bytes = 100\n", "github.webhook_max_body_bytes"),
        ("[github]\nwebhook_max_body_bytes = 104857600\n", "github.webhook_max_body_bytes"),
        ("[github]\nwebhook_max_concurrency = 0\n", "github.webhook_max_concurrency"),
        ("[github]\nwebhook_replay_window_secs = 5\n", "github.webhook_replay_window_secs"),
    ] {
        let e = parse(&format!("{text}{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
    }
}

#[test]
fn model_names_are_checked_where_the_config_names_them() {
    let thousand = "m".repeat(1000);
    for bad in ["gpt 5", "gpt-5\\nfake_metric 1", thousand.as_str()] {
        let models = format!("[engine]\n[[engine.models]]\nprovider = \"openai\"\nmodel = \"{bad}\"\n");
        let e = parse(&format!("{models}{MINIMAL}")).unwrap_err();
        assert_eq!(e.key, "engine.models[0].model", "{bad:?}: {e}");
        assert!(e.reason.contains("not a model name") && e.reason.len() < 200, "{e}");

        let e = parse(&format!("{MINIMAL}model = \"{bad}\"\n")).unwrap_err();
        assert_eq!(e.key, "projects[0].model", "{bad:?}: {e}");

        let e = parse(&format!("{MINIMAL}[projects.compare]\nmodels = [\"gpt-5\", \"{bad}\"]\n")).unwrap_err();
        assert_eq!(e.key, "projects[0].compare.models", "{bad:?}: {e}");
        assert!(e.reason.contains("not a model name"), "{e}");
    }
    let ok = "[engine]\n[[engine.models]]\nprovider = \"google\"\nmodel = \"models/gemini-2.5-pro\"\n";
    parse(&format!("{ok}{MINIMAL}model = \"models/gemini-2.5-pro\"\n")).unwrap();
}

#[test]
fn egress_is_on_and_the_proxy_is_reached_on_the_sandboxs_loopback_unless_turned_off() {
    let c = parse(MINIMAL).unwrap();
    let egress = c.docker.egress.as_ref().expect("egress control is on by default");
    assert_eq!(egress.proxy_port, None, "the daemon fills in its proxy's port");
    assert_eq!(c.proxy.sandbox_url, "http://127.0.0.1:3128");

    let port = parse(&format!("[docker.egress]\nforwarder_port = 3000\n{MINIMAL}")).unwrap();
    assert_eq!(port.proxy.sandbox_url, "http://127.0.0.1:3000");
    // The per-sandbox networks' settings of earlier versions are gone.
    let err = parse(&format!("[docker.egress]\nspare_networks = 1\n{MINIMAL}")).unwrap_err();
    assert!(err.key.starts_with("docker.egress") && err.reason.contains("spare_networks"), "{err}");
    assert!(crate::egress::warning(&c.docker).is_none());

    let off = parse(&format!("[docker]\negress = \"off\"\n{MINIMAL}")).unwrap();
    assert!(off.docker.egress.is_none());
    assert_eq!(off.proxy.sandbox_url, "http://127.0.0.1:8701");
    assert!(crate::egress::warning(&off.docker).is_some_and(|w| w.contains("egress = \"off\"")));

    let err = parse(&format!("[docker]\negress = \"sometimes\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(err.key, "docker.egress", "{err}");
}

#[test]
fn worktree_limits_have_defaults_and_refuse_zero() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.engine.worktree_limits, paid_core::WorktreeLimits::default());
    let c = parse(&format!("[engine.worktree_limits]\nfiles = 10\n{MINIMAL}")).unwrap();
    assert_eq!(c.engine.worktree_limits.files, 10);
    assert_eq!(c.engine.worktree_limits.file_bytes, 100 << 20);
    let err = parse(&format!("[engine.worktree_limits]\nfile_bytes = 0\n{MINIMAL}")).unwrap_err();
    assert_eq!(err.key, "engine.worktree_limits", "{err}");
}

#[test]
fn authors_may_be_trusted_by_user_id() {
    let c = parse("[[projects]]\nrepo = \"acme/widgets\"\nallowed_author_ids = [583231]\n").unwrap();
    assert_eq!((c.projects[0].allowed_authors.len(), c.projects[0].allowed_author_ids.clone()), (0, vec![583231]));
    let project = c.projects[0].to_project(paid_core::ProjectId(uuid::Uuid::nil()), chrono::Utc::now());
    assert_eq!(project.allowed_author_ids, vec![583231]);
    assert_eq!(parse(MINIMAL).unwrap().projects[0].allowed_author_ids, Vec::<u64>::new());
    // Neither logins nor ids: nobody could trigger a run.
    let e = parse("[[projects]]\nrepo = \"acme/widgets\"\n").unwrap_err();
    assert_eq!(e.key, "projects[0].allowed_authors", "{e}");
    let e = parse("[[projects]]\nrepo = \"acme/widgets\"\nallowed_author_ids = [\"octocat\"]\n").unwrap_err();
    assert_eq!(e.key, "projects[0].allowed_author_ids[0]", "{e}");
}
