//! [`NullRuntime`]: a sandbox runtime that runs nothing.

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::{
    ExecEvent, ExecExit, ExecRequest, ReapReport, ReapRequest, Result, SandboxHandle, SandboxInfo, SandboxRuntime,
    SandboxSpec,
};

/// A [`SandboxRuntime`] that creates nothing and runs nothing: every image
/// "exists", `create` hands back a handle for a sandbox that was never
/// made, every exec exits 0 at once without output, nothing is ever
/// running or listed, and stopping, removing and reaping succeed.
///
/// The negative control of the sandbox conformance suite; it needs no
/// container engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullRuntime;

#[async_trait]
impl SandboxRuntime for NullRuntime {
    async fn ensure_image(&self, _image: &str) -> Result<()> {
        Ok(())
    }
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        Ok(SandboxHandle { id: format!("null-{}", spec.run_id), mount_at: spec.mount_at.clone() })
    }
    async fn exec(&self, _sandbox: &SandboxHandle, _req: ExecRequest) -> Result<BoxStream<'static, Result<ExecEvent>>> {
        Ok(stream::iter([Ok(ExecEvent::Exit(ExecExit::Code(0)))]).boxed())
    }
    async fn is_running(&self, _sandbox: &SandboxHandle) -> Result<bool> {
        Ok(false)
    }
    async fn stop(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }
    async fn remove(&self, _sandbox: &SandboxHandle) -> Result<()> {
        Ok(())
    }
    async fn list_managed(&self) -> Result<Vec<SandboxInfo>> {
        Ok(Vec::new())
    }
    async fn reap(&self, _req: &ReapRequest<'_>) -> Result<ReapReport> {
        Ok(ReapReport::default())
    }
}
