//! Bounded run logs.
//!
//! Each run keeps the bytes its chunks hold (`runs.log_bytes`), whether the
//! cap was hit (`runs.log_truncated`) and its last chunk number
//! (`runs.log_seq`). An append reads those, decides in Rust what fits (cut
//! on a character boundary), then writes its chunks and the new counters in
//! one statement that only applies if `log_seq` is still what it read: a
//! concurrent append makes it change nothing, and it reads again.

use paid_core::{AppendLog, LogAppend, LogChunk, LogStream, RunId, TRUNCATION_MARKER, Timestamp};
use sqlx::PgPool;

use crate::error::OpResult;
use crate::rows::{self, int};
use crate::runs;

/// Appends lost to a concurrent append this many times in a row give up
/// with a retryable error.
const ATTEMPTS: usize = 64;

pub(crate) async fn append(pool: &PgPool, req: &AppendLog<'_>) -> OpResult<LogAppend> {
    let id = req.run_id;
    for _ in 0..ATTEMPTS {
        let budget: Option<(i64, bool, i64)> =
            sqlx::query_as("SELECT log_bytes, log_truncated, log_seq FROM runs WHERE id = $1")
                .bind(id.0)
                .fetch_optional(pool)
                .await?;
        let (used, truncated, seq) = budget.ok_or_else(|| runs::not_found(id))?;
        if truncated {
            return Ok(LogAppend { stored: 0, truncated: true });
        }
        let room = usize::try_from(used).map_or(0, |used| req.cap_bytes.saturating_sub(used));
        let fits = req.text.len() <= room;
        let stored = if fits { req.text.len() } else { floor_char_boundary(req.text, room) };

        let mut streams = Vec::with_capacity(2);
        let mut texts: Vec<&[u8]> = Vec::with_capacity(2);
        if stored > 0 {
            streams.push(req.stream.as_str());
            texts.push(&req.text.as_bytes()[..stored]);
        }
        if !fits {
            streams.push(LogStream::System.as_str());
            texts.push(TRUNCATION_MARKER.as_bytes());
        }
        if streams.is_empty() {
            return Ok(LogAppend { stored: 0, truncated: false });
        }
        let written = sqlx::query(
            "WITH counters AS (
                 UPDATE runs SET log_seq = log_seq + $3, log_bytes = log_bytes + $4, log_truncated = $5
                 WHERE id = $1 AND log_seq = $2 AND NOT log_truncated
                 RETURNING id
             )
             INSERT INTO run_logs (run_id, seq, stream, text, at)
             SELECT counters.id, $2 + c.n, c.stream, c.text, $8
             FROM counters, unnest($6::text[], $7::bytea[]) WITH ORDINALITY AS c(stream, text, n)",
        )
        .bind(id.0)
        .bind(seq)
        .bind(streams.len() as i64)
        .bind(int("log bytes", stored as u64)?)
        .bind(!fits)
        .bind(&streams)
        .bind(&texts)
        .bind(req.at)
        .execute(pool)
        .await?;
        if written.rows_affected() > 0 {
            return Ok(LogAppend { stored, truncated: !fits });
        }
    }
    Err(crate::error::OpError::Refused(paid_core::Error::Backend {
        backend: "postgres",
        message: format!("log append to run {id} lost {ATTEMPTS} races in a row with concurrent appends"),
        retryable: true,
        source: None,
    }))
}

/// Deletes the chunks of runs that ended before `finished_before`.
pub(crate) async fn prune(pool: &PgPool, finished_before: Timestamp) -> OpResult<u64> {
    let deleted = sqlx::query(
        "DELETE FROM run_logs WHERE run_id IN (
             SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1
         )",
    )
    .bind(finished_before)
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// The largest index `<= max` that falls on a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) async fn after(pool: &PgPool, id: RunId, after: u64) -> OpResult<Vec<LogChunk>> {
    // Past i64::MAX nothing can follow.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let all = sqlx::query("SELECT seq, stream, text, at FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq")
        .bind(id.0)
        .bind(after)
        .fetch_all(pool)
        .await?;
    all.iter().map(|row| rows::log(id, row)).collect()
}

#[cfg(test)]
mod tests {
    use super::floor_char_boundary;

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(floor_char_boundary("ééé", 5), 4);
        assert_eq!(floor_char_boundary("ééé", 3), 2);
        assert_eq!(floor_char_boundary("ééé", 1), 0);
        assert_eq!(floor_char_boundary("abc", 10), 3);
        assert_eq!(floor_char_boundary("a🦀", 4), 1);
    }
}
