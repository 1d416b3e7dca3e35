//! Identifiers, and the [`Ids`] port that makes them.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Parses the canonical hyphenated form.
            pub fn parse(s: &str) -> crate::Result<Self> {
                Uuid::parse_str(s).map($name).map_err(|e| crate::Error::InvalidInput {
                    what: stringify!($name).to_string(),
                    message: e.to_string(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a [`Project`](crate::Project).
    ProjectId
);
id_type!(
    /// Identifies a [`Run`](crate::Run).
    RunId
);

/// Makes identifiers and random values. Injected so tests are deterministic.
pub trait Ids: Send + Sync + 'static {
    /// A new, time-ordered unique id.
    fn uuid(&self) -> Uuid;
    /// `n` random bytes, hex encoded (used for branch suffixes and tokens).
    fn hex(&self, n: usize) -> String;
}

/// The production [`Ids`]: UUID v7 and the operating system's RNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl Ids for RandomIds {
    fn uuid(&self) -> Uuid {
        Uuid::now_v7()
    }

    fn hex(&self, n: usize) -> String {
        let mut buf = vec![0u8; n];
        rand::rng().fill_bytes(&mut buf);
        hex::encode(buf)
    }
}

/// Deterministic [`Ids`] for tests: a counter.
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: std::sync::atomic::AtomicU64,
}

impl Ids for SequentialIds {
    fn uuid(&self) -> Uuid {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Uuid::from_u64_pair(0x0190_0000_0000_7000, 0x8000_0000_0000_0000 | n)
    }

    fn hex(&self, n: usize) -> String {
        let v = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let s = format!("{v:0width$x}", width = n * 2);
        s[s.len() - n * 2..].to_string()
    }
}
