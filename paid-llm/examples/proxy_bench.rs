//! Benchmark of the metering proxy against a local fake upstream with a
//! fixed latency, measured in one run:
//!
//! - (a) straight to the upstream, (b) through this proxy, (c) through the
//!   LiteLLM proxy configured for the same upstream (when it is installed);
//! - added latency, p50 and p99, of sequential non-streaming requests;
//! - throughput of 64 and 256 concurrent streaming requests;
//! - the proxy's resident memory: idle, after load, and per open idle stream.
//!
//! Every server runs in its own process on 127.0.0.1 (the fake upstream, the
//! proxy, LiteLLM); this process is the load generator.
//!
//! ```text
//! cargo run --release -p paid-llm --example proxy_bench
//! LITELLM=target/litellm/venv/bin/litellm cargo run --release -p paid-llm --example proxy_bench
//! ```
//!
//! Settings (environment): `BENCH_LATENCY_MS` (upstream latency, 5),
//! `BENCH_REQUESTS` (sequential requests per target, 1000), `BENCH_SECONDS`
//! (per throughput run, 5), `BENCH_EVENTS` (SSE events per stream, 16),
//! `BENCH_IDLE_STREAMS` (open idle streams for the memory test, 256),
//! `BENCH_NO_RUN_CHECK` (set: the proxy skips its per-request store check
//! that the run is still active), `LITELLM` (the `litellm` executable;
//! none: skip LiteLLM; install it with
//! `python3 -m venv target/litellm/venv && target/litellm/venv/bin/pip install 'litellm[proxy]'`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use paid_core::Store;
use paid_core::testing::fixtures;
use paid_llm::fake::{Canned, FakeUpstream};
use paid_llm::providers::ProviderKind;
use paid_llm::proxy::{Proxy, Upstream};
use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fake") => serve_fake(&args[2..]).await,
        Some("proxy") => serve_proxy(&args[2..]).await,
        _ => orchestrate().await,
    }
}

/// `fake <latency_ms> <events> <event_gap_ms>`: prints `READY <port>`.
async fn serve_fake(args: &[String]) {
    let latency: u64 = args[0].parse().unwrap();
    let events: usize = args[1].parse().unwrap();
    let gap: u64 = args[2].parse().unwrap();
    let fake = FakeUpstream::start_on("127.0.0.1:0".parse().unwrap(), false).await.unwrap();
    let text: String = (0..events).map(|i| format!("tok{i} ")).collect();
    fake.set_default(
        Canned::text(text)
            .chunks(events)
            .head_delay(Duration::from_millis(latency))
            .event_delay(Duration::from_millis(gap)),
    );
    println!("READY {}", fake.addr().port());
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}

/// `proxy <openai_upstream> <idle_upstream>`: prints `READY <port> <token>`.
async fn serve_proxy(args: &[String]) {
    let store: Arc<dyn Store> = Arc::new(paid_store_sqlite::SqliteStore::open_in_memory().unwrap());
    let project = fixtures::project("bench");
    store.put_project(&project).await.unwrap();
    let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
    let proxy = Proxy::builder(store)
        .upstream(Upstream::new(ProviderKind::OpenAi, &args[0], Some("sk-upstream".into())))
        .upstream(Upstream::new(ProviderKind::Compatible, &args[1], Some("sk-upstream".into())).named("idle"))
        .config(paid_llm::proxy::ProxyConfig {
            check_run_state: std::env::var_os("BENCH_NO_RUN_CHECK").is_none(),
            // One run token carries every stream of the benchmark.
            run_concurrency: 4096,
            max_in_flight: 4096,
            ..Default::default()
        })
        .build()
        .unwrap();
    let server = proxy.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let token = proxy.issue_token(run.id, project.id);
    println!("READY {} {}", server.addr().port(), token.expose());
    std::io::stdout().flush().unwrap();
    std::future::pending::<()>().await;
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn spawn_self(args: &[&str]) -> (Proc, Vec<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    assert_eq!(words.first().map(String::as_str), Some("READY"), "child said {line:?}");
    (Proc(child), words[1..].to_vec())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of `pid` so far, from `/proc/{pid}/stat` (clock ticks of 10 ms).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5); `fields` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

/// Where a target is and how to call it.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    key: String,
}

fn body(stream: bool) -> serde_json::Value {
    let mut b = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]});
    if stream {
        b["stream"] = true.into();
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

async fn call(http: &reqwest::Client, t: &Target, stream: bool) -> bool {
    let Ok(resp) = http.post(&t.url).bearer_auth(&t.key).json(&body(stream)).send().await else { return false };
    if !resp.status().is_success() {
        return false;
    }
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        if c.is_err() {
            return false;
        }
    }
    true
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn latencies(http: &reqwest::Client, t: &Target, n: usize) -> (Duration, Duration) {
    for _ in 0..n / 10 {
        assert!(call(http, t, false).await, "{} warm-up failed", t.name);
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        assert!(call(http, t, false).await, "{} request failed", t.name);
        times.push(started.elapsed());
    }
    times.sort();
    (percentile(&times, 0.50), percentile(&times, 0.99))
}

/// Completed streams per second with `concurrency` clients for `secs`.
async fn throughput(http: &reqwest::Client, t: &Target, concurrency: usize, secs: u64) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, t, done, failed) = (http.clone(), t.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if call(&http, &t, true).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    (done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// LiteLLM refuses to start without a master key; requests present it.
const LITELLM_KEY: &str = "sk-paid-bench-0123456789abcdef0123456789abcdef";

async fn start_litellm(exe: &str, upstream_port: &str) -> Result<(Proc, Target), String> {
    let dir = std::env::temp_dir().join(format!("paid-bench-litellm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      \
             api_base: http://127.0.0.1:{upstream_port}/v1\n      api_key: sk-upstream\n\
             litellm_settings:\n  telemetry: false\n  set_verbose: false\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let log = std::fs::File::create(dir.join("litellm.log")).map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args(["--config", &config.display().to_string(), "--host", "127.0.0.1", "--port", &port.to_string()])
        .env("LITELLM_MASTER_KEY", LITELLM_KEY)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env("LITELLM_LOG", "ERROR")
        .env("NO_DOCKER", "1")
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {exe}: {e}"))?;
    let proc = Proc(child);
    let http = paid_llm::providers::http_client().map_err(|e| e.to_string())?;
    let target = Target {
        name: "litellm",
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        key: LITELLM_KEY.into(),
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        if call(&http, &target, false).await {
            return Ok((proc, target));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = std::fs::read_to_string(dir.join("litellm.log")).unwrap_or_default();
    let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    Err(format!("LiteLLM did not answer within 180 s; log tail:\n{tail}"))
}

async fn orchestrate() {
    let latency: u64 = env_or("BENCH_LATENCY_MS", 5);
    let requests: usize = env_or("BENCH_REQUESTS", 1000);
    let secs: u64 = env_or("BENCH_SECONDS", 5);
    let events: usize = env_or("BENCH_EVENTS", 16);
    let idle_streams: usize = env_or("BENCH_IDLE_STREAMS", 256);

    let (_fake, fake_port) = spawn_self(&["fake", &latency.to_string(), &events.to_string(), "0"]);
    let (_idle, idle_port) = spawn_self(&["fake", "0", "2", "600000"]);
    let fake_url = format!("http://127.0.0.1:{}", fake_port[0]);
    let idle_url = format!("http://127.0.0.1:{}", idle_port[0]);
    let (proxy, proxy_info) = spawn_self(&["proxy", &fake_url, &idle_url]);
    let proxy_url = format!("http://127.0.0.1:{}", proxy_info[0]);
    let token = proxy_info[1].clone();
    let rss_start = rss_kib(proxy.pid());

    let direct = Target { name: "direct", url: format!("{fake_url}/v1/chat/completions"), key: "sk-upstream".into() };
    let through =
        Target { name: "paid-proxy", url: format!("{proxy_url}/openai/v1/chat/completions"), key: token.clone() };
    let mut targets = vec![direct.clone(), through.clone()];

    let litellm = match std::env::var("LITELLM") {
        Ok(exe) => match start_litellm(&exe, &fake_port[0]).await {
            Ok((p, t)) => {
                targets.push(t);
                Some(p)
            }
            Err(e) => {
                println!("LiteLLM not measured: {e}");
                None
            }
        },
        Err(_) => {
            println!("LiteLLM not measured: LITELLM is not set");
            None
        }
    };

    let http = paid_llm::providers::http_client().unwrap();
    println!(
        "upstream latency {latency} ms, {events} events per stream, {requests} sequential requests, {secs} s per throughput run"
    );

    println!("\n## latency (non-streaming, sequential)");
    let mut lat = Vec::new();
    for t in &targets {
        let (p50, p99) = latencies(&http, t, requests).await;
        println!("{:<11} p50 {:>10}  p99 {:>10}", t.name, ms(p50), ms(p99));
        lat.push((t.name, p50, p99));
    }
    for (name, p50, p99) in &lat[1..] {
        println!(
            "{name:<11} added p50 {:>10}  added p99 {:>10}",
            ms(p50.saturating_sub(lat[0].1)),
            ms(p99.saturating_sub(lat[0].2))
        );
    }

    println!("\n## throughput (streaming, {events} events per stream)");
    let mut tput = Vec::new();
    let pids: Vec<(&str, u32)> =
        [("paid-proxy", proxy.pid())].into_iter().chain(litellm.as_ref().map(|p| ("litellm", p.pid()))).collect();
    for c in [64, 256] {
        for t in &targets {
            let pid = pids.iter().find(|(n, _)| *n == t.name).map(|p| p.1);
            let cpu_before = pid.map(cpu_secs).unwrap_or(0.0);
            let (rate, failed) = throughput(&http, t, c, secs).await;
            let cpu = match pid {
                Some(pid) => {
                    let used = cpu_secs(pid) - cpu_before;
                    format!(
                        ", server CPU {:.0}% of a core, {:.0} µs per stream",
                        100.0 * used / secs as f64,
                        1e6 * used / (rate * secs as f64)
                    )
                }
                None => String::new(),
            };
            println!("{:<11} {c:>3} concurrent: {rate:>9.1} streams/s ({failed} failed){cpu}", t.name);
            tput.push((t.name, c, rate));
        }
    }
    let rss_loaded = rss_kib(proxy.pid());

    println!("\n## proxy memory");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_idle = rss_kib(proxy.pid());
    let idle = Target { name: "idle", url: format!("{proxy_url}/idle/v1/chat/completions"), key: token.clone() };
    let mut open = Vec::new();
    for _ in 0..idle_streams {
        let resp = http.post(&idle.url).bearer_auth(&idle.key).json(&body(true)).send().await.unwrap();
        assert!(resp.status().is_success());
        let mut s = resp.bytes_stream();
        let first = s.next().await;
        assert!(matches!(first, Some(Ok(_))));
        open.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = rss_kib(proxy.pid());
    let per_stream = (rss_open.saturating_sub(rss_before_idle) * 1024) / idle_streams.max(1) as u64;
    drop(open);
    println!("paid-proxy RSS at start {rss_start} KiB, after load {rss_loaded} KiB");
    println!(
        "paid-proxy RSS with {idle_streams} idle open streams {rss_open} KiB (+{} KiB): {:.1} KiB per stream",
        rss_open.saturating_sub(rss_before_idle),
        per_stream as f64 / 1024.0
    );
    if let Some(p) = &litellm {
        println!("litellm RSS after load {} KiB (main process)", rss_kib(p.pid()));
    }

    println!("\n## ratios (same run)");
    let find = |name: &str, c: usize| tput.iter().find(|(n, cc, _)| *n == name && *cc == c).map(|t| t.2);
    for c in [64, 256] {
        if let (Some(p), Some(d)) = (find("paid-proxy", c), find("direct", c)) {
            println!("{c:>3} concurrent: paid-proxy / direct = {:.2}", p / d);
        }
        if let (Some(p), Some(l)) = (find("paid-proxy", c), find("litellm", c)) {
            println!("{c:>3} concurrent: paid-proxy / litellm = {:.1}x", p / l);
        }
    }
    if let (Some(p), Some(l)) = (lat.iter().find(|l| l.0 == "paid-proxy"), lat.iter().find(|l| l.0 == "litellm")) {
        println!(
            "added p50: paid-proxy {} vs litellm {}",
            ms(p.1.saturating_sub(lat[0].1)),
            ms(l.1.saturating_sub(lat[0].1))
        );
    }
}
