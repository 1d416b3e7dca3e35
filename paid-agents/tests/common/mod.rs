//! Shared helpers of the tests that run agents in real Docker sandboxes.
//! Docker is required: these tests fail, never skip, without it.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod engine;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use paid_core::engine::{RunLogger, SandboxSession};
use paid_core::testing::fixtures;
use paid_core::{
    AgentContext, ChatEvent, ChatRequest, ChatResponse, LlmProvider, Project, ResourceLimits, RunId, SandboxHandle,
    SandboxRuntime, SandboxSpec, Store, SystemClock, ToolCall, TrackedIssue, Usage,
};
use paid_runtime_docker::DockerRuntime;
use paid_store_sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

/// The plain sandbox image (`scripts/build-images` builds it).
pub fn image() -> String {
    std::env::var("PAID_AGENT_IMAGE").unwrap_or_else(|_| "paid/agent:bookworm".to_string())
}

/// A runtime on the local engine with `image` present, or a panic that says
/// what is missing.
pub async fn docker_required(image: &str) -> DockerRuntime {
    let runtime = match DockerRuntime::connect_local().await {
        Ok(runtime) => runtime,
        Err(e) => panic!(
            "these tests need a running Docker engine and never skip (CI={:?}): {e}\n\
             start dockerd (or point DOCKER_HOST at one), then run scripts/build-images",
            std::env::var("CI").ok()
        ),
    };
    if let Err(e) = runtime.ensure_image(image).await {
        panic!("the sandbox image is required: {e}");
    }
    runtime
}

/// A live sandbox on a temporary worktree, with a run in an in-memory store
/// for its log. The container is removed on drop.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub runtime: Arc<DockerRuntime>,
    pub handle: SandboxHandle,
    pub session: SandboxSession,
    pub store: Arc<dyn Store>,
    pub project: Project,
    pub issue: TrackedIssue,
    pub run_id: RunId,
}

impl Sandbox {
    /// A sandbox of `image` on a worktree holding `files`.
    pub async fn start(image: &str, files: &[(&str, &str)]) -> Self {
        let runtime = Arc::new(docker_required(image).await);
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let mut project = fixtures::project("calc");
        project.verify = vec!["sh test.sh".into()];
        store.put_project(&project).await.unwrap();
        let issue = fixtures::issue(project.id, 1);
        store.put_issue(&issue).await.unwrap();
        let run = store.create_run(&fixtures::new_run(project.id, 1)).await.unwrap();
        let spec = SandboxSpec {
            run_id: run.id,
            project_id: project.id,
            image: image.to_string(),
            worktree: dir.path().to_path_buf(),
            mount_at: SandboxSpec::DEFAULT_MOUNT.to_string(),
            env: Default::default(),
            limits: ResourceLimits { memory_bytes: 1 << 30, cpus: 1.0, pids: 256, tmp_bytes: 256 << 20 },
        };
        let handle = runtime.create(&spec).await.unwrap();
        let logger = RunLogger::new(store.clone(), Arc::new(SystemClock), run.id, 8 << 20);
        let session = SandboxSession::new(runtime.clone(), handle.clone(), logger);
        Self { dir, runtime, handle, session, store, project, issue, run_id: run.id }
    }

    /// The worktree on the host.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A context for iteration 1 with `prompt` and `model`.
    pub fn context<'a>(&'a self, prompt: &'a str, model: Option<&'a str>) -> AgentContext<'a> {
        AgentContext {
            run_id: self.run_id,
            project: &self.project,
            issue: &self.issue,
            prompt,
            model,
            sandbox: &self.session,
            proxy: None,
            iteration: 1,
            feedback: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-f", &self.handle.id]).output();
    }
}

/// The files of the sample project: `sh test.sh` fails because `add()`
/// subtracts.
pub const CALC: &[(&str, &str)] = &[
    ("calc.sh", "#!/bin/sh\nadd() {\n    echo $(( $1 - $2 ))\n}\n\nmul() {\n    echo $(( $1 * $2 ))\n}\n"),
    (
        "test.sh",
        "#!/bin/sh\n. ./calc.sh\nfail=0\ncheck() {\n    if [ \"$2\" != \"$3\" ]; then echo \"FAIL: $1: expected $3, got $2\"; fail=1; else echo \"ok: $1\"; fi\n}\ncheck \"add 2 3\" \"$(add 2 3)\" 5\ncheck \"mul 4 5\" \"$(mul 4 5)\" 20\nexit $fail\n",
    ),
];

/// `script(turn, request)`: the answer to turn `turn` (from 1).
type Script = Box<dyn Fn(usize, &ChatRequest) -> ChatResponse + Send + Sync>;

/// A scripted model: `script(turn, request)` answers turn `turn` (from 1).
/// Every request is recorded.
pub struct Scripted {
    script: Script,
    pub requests: Mutex<Vec<ChatRequest>>,
}

impl Scripted {
    pub fn new(script: impl Fn(usize, &ChatRequest) -> ChatResponse + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { script: Box::new(script), requests: Mutex::new(Vec::new()) })
    }

    /// Answers the given responses in order, then says "done".
    pub fn sequence(responses: Vec<ChatResponse>) -> Arc<Self> {
        let queue = Mutex::new(VecDeque::from(responses));
        Self::new(move |_, _| queue.lock().unwrap().pop_front().unwrap_or_else(|| say("done")))
    }

    /// The tool results the model saw in its last request, in order.
    pub fn tool_results(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests
            .last()
            .map(|r| r.messages.iter().filter(|m| m.role == paid_core::Role::Tool).map(|m| m.content.clone()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl LlmProvider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn complete(&self, req: &ChatRequest) -> paid_core::Result<ChatResponse> {
        let turn = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(req.clone());
            requests.len()
        };
        Ok((self.script)(turn, req))
    }

    async fn stream(&self, req: &ChatRequest) -> paid_core::Result<BoxStream<'static, paid_core::Result<ChatEvent>>> {
        let resp = self.complete(req).await?;
        let mut events = vec![Ok(ChatEvent::TextDelta(resp.content))];
        events.extend(resp.tool_calls.into_iter().map(|c| Ok(ChatEvent::ToolCall(c))));
        events.push(Ok(ChatEvent::Done { stop_reason: resp.stop_reason, usage: resp.usage }));
        Ok(Box::pin(stream::iter(events)))
    }
}

/// Usage of one scripted response.
pub const TURN_USAGE: Usage = Usage { input: 100, cache_read: 0, cache_write: 0, output: 20, reasoning: 0 };

/// A response calling one tool.
pub fn call(name: &str, args: serde_json::Value) -> ChatResponse {
    calls(&[(name, args)])
}

/// A response calling several tools.
pub fn calls(list: &[(&str, serde_json::Value)]) -> ChatResponse {
    ChatResponse {
        content: String::new(),
        tool_calls: list
            .iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCall {
                id: format!("call_{i}_{name}"),
                name: name.to_string(),
                arguments: args.clone(),
            })
            .collect(),
        stop_reason: "tool_use".into(),
        usage: TURN_USAGE,
    }
}

/// A final answer.
pub fn say(text: &str) -> ChatResponse {
    ChatResponse { content: text.into(), tool_calls: Vec::new(), stop_reason: "end_turn".into(), usage: TURN_USAGE }
}

/// Reads a host file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
