//! The acceptance test with a real third-party agent CLI: aider (from PyPI,
//! in `paid/agent-aider:bookworm`, built by `scripts/build-images --aider`)
//! runs in a hardened sandbox through the whole engine. Its only way to a
//! model is the metering proxy (paid-llm) with the run's token; behind the
//! proxy a scripted fake OpenAI upstream answers with an edit. The test
//! checks that aider edited the file, that the run ended with a commit and a
//! pull request, and that the proxy recorded the usage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;

use common::engine::{Harness, REPO};
use paid_agents::CliAgent;
use paid_agents::builtin::Aider;
use paid_core::{RunState, Usage};
use paid_llm::fake::{Canned, FakeUpstream, Reply};
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::{Proxy, ProxyCredentials, Upstream};
use paid_runtime_docker::{DockerConfig, DockerRuntime, EgressConfig};

fn aider_image() -> String {
    std::env::var("PAID_AIDER_IMAGE").unwrap_or_else(|_| "paid/agent-aider:bookworm".to_string())
}

/// The host's address on Docker's default bridge, where a sandbox reaches
/// the host.
fn bridge_gateway() -> IpAddr {
    let out = Command::new("docker")
        .args(["network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}"])
        .output()
        .expect("docker CLI");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    let first = words.next().expect("the bridge network has an address");
    if let Ok(ip) = first.parse() {
        return ip;
    }
    // No gateway recorded: the subnet's first host is the bridge.
    let base: std::net::Ipv4Addr = first.split('/').next().unwrap().parse().unwrap();
    IpAddr::V4(std::net::Ipv4Addr::from(u32::from(base) + 1))
}

/// What the scripted model answers: one search/replace edit in aider's
/// `diff` format.
const EDIT: &str = "The bug is in `add()`: it subtracts. Fixed:\n\ncalc.sh\n```\n<<<<<<< SEARCH\n    echo $(( $1 - $2 ))\n=======\n    echo $(( $1 + $2 ))\n>>>>>>> REPLACE\n```\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aider_fixes_the_issue_through_the_metering_proxy() {
    let mut h = Harness::new(&aider_image(), "aider").await;

    let upstream = FakeUpstream::start().await.unwrap();
    let usage = Usage { input: 1_830, cache_read: 0, cache_write: 0, output: 64, reasoning: 0 };
    upstream.push(Reply::Ok(Canned::text(EDIT).usage(usage)));
    upstream.set_default(Canned::text("The fix is complete.").usage(usage));
    let proxy = Proxy::builder(h.store.clone())
        .upstream(Upstream::new(ProviderKind::OpenAi, upstream.url(), Some("sk-real-provider-key".to_string().into())))
        .build()
        .unwrap();
    let server = proxy.spawn(SocketAddr::new(bridge_gateway(), 0)).await.unwrap();
    // Egress control, as `paid serve` has it by default: the sandbox has no
    // network; its relay on 127.0.0.1:3128 reaches the forwarder, which
    // relays to the proxy on the host's bridge address.
    let docker = DockerRuntime::connect(DockerConfig {
        egress: Some(EgressConfig::proxy(server.addr().port())),
        label_prefix: format!("paid-aider-{}", std::process::id()),
        ..DockerConfig::default()
    })
    .await
    .unwrap();
    h.runtime = Arc::new(docker.clone());
    let credentials = Arc::new(ProxyCredentials::new(proxy.clone(), "http://127.0.0.1:3128"));

    let agent = Arc::new(CliAgent::new(Arc::new(Aider)));
    let engine = h.engine_with(agent, "openai/gpt-4o", 2, Some(credentials));
    let run = h.run(&engine).await;
    let log = h.log(&run).await;
    if std::env::var_os("PAID_SHOW_LOG").is_some() {
        eprintln!("--- run log ---\n{log}");
    }
    assert_eq!(run.state, RunState::Succeeded, "{:?}\n--- run log ---\n{log}", run.failure);

    // aider edited the file, and the engine committed and pushed it.
    let branch = run.branch.clone().unwrap();
    assert!(h.remote_file(&branch, "calc.sh").contains("echo $(( $1 + $2 ))"), "{log}");
    assert_eq!(h.remote_log(&branch)[0], "Fix #1: add() returns the wrong result");
    // Nothing of aider's own (history, tag cache, conventions) was committed.
    let out =
        Command::new("git").args(["ls-tree", "-r", "--name-only", &branch]).current_dir(&h.remote).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "calc.sh\ntest.sh\n");
    let prs = h.github.pull_requests(REPO.0, REPO.1);
    assert_eq!(prs.len(), 1);
    assert!(prs[0].body.contains("Applied edit to calc.sh"), "{}", prs[0].body);

    // Every model request went through the proxy: the upstream saw the real
    // key, never the run token, and the proxy metered it for the run.
    proxy.settled().await;
    let received = upstream.received();
    assert!(!received.is_empty());
    for r in &received {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-real-provider-key"));
        assert_eq!(r.body["model"], "gpt-4o");
    }
    let records = h.store.usage(run.id).await.unwrap();
    let metered: Vec<_> = records.iter().filter(|r| r.provider == "openai").collect();
    assert_eq!(metered.len(), received.len(), "{records:#?}");
    assert!(metered.iter().all(|r| r.usage == usage && r.status == "200"), "{records:#?}");
    // aider's own report of its tokens is kept beside the proxy's records.
    let reported: Vec<_> = records.iter().filter(|r| r.provider == "agent:aider").collect();
    assert_eq!(reported.len(), 1, "{records:#?}");
    assert!(reported[0].usage.input > 0, "{records:#?}");
    docker.shutdown().await;
    server.shutdown().await;
}
