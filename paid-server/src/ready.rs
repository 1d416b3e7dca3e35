//! The ready file (`paid serve --ready-file`, `paid-worker --ready-file`):
//! once every listener is bound, a small JSON document with the bound
//! addresses, written atomically (a temporary file in the same directory,
//! then a rename), so a supervisor or a test can bind port 0 and read where
//! the daemon actually listens instead of racing for a free port.
//!
//! ```json
//! {"pid": 4242, "api": "127.0.0.1:41234", "health": "127.0.0.1:41234",
//!  "metrics": "127.0.0.1:41234", "proxy": "127.0.0.1:41235"}
//! ```
//!
//! A listener the process does not have is `null` (`api` on `paid-worker`,
//! `proxy` without providers, everything but `health` on an
//! instant-backend worker without `--health-addr`).

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What the ready file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The process.
    pub pid: u32,
    /// The HTTP API (`api.bind`), when this process serves it.
    pub api: Option<SocketAddr>,
    /// Where `/health` and `/health/ready` answer.
    pub health: Option<SocketAddr>,
    /// Where `/metrics` answers (`api.metrics_bind`, else the API listener).
    pub metrics: Option<SocketAddr>,
    /// The metering proxy (`proxy.bind`), when providers are configured.
    pub proxy: Option<SocketAddr>,
}

impl Ready {
    /// Nothing bound yet, for this process.
    pub fn this_process() -> Self {
        Self { pid: std::process::id(), ..Self::default() }
    }

    /// Writes `self` to `path` atomically: `path` either does not exist or
    /// holds the whole document.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let name = path.file_name().with_context(|| format!("ready file {}: not a file name", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let mut text = serde_json::to_vec(self)?;
        text.push(b'\n');
        std::fs::write(&tmp, &text).with_context(|| format!("cannot write the ready file {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot rename {} to {}", tmp.display(), path.display())
        })?;
        Ok(())
    }

    /// Reads a ready file written by [`Ready::write`].
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        let ready = Ready {
            pid: 7,
            api: Some("127.0.0.1:1".parse().unwrap()),
            health: Some("127.0.0.1:1".parse().unwrap()),
            metrics: Some("127.0.0.1:2".parse().unwrap()),
            proxy: None,
        };
        ready.write(&path).unwrap();
        assert_eq!(Ready::read(&path).unwrap(), ready);
        // Only the file itself is left: the temporary one was renamed.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("ready.json")]);
        let raw: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["proxy"], serde_json::Value::Null);
        assert_eq!(raw["metrics"], "127.0.0.1:2");
    }
}
