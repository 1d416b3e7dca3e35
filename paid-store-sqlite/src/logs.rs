//! Bounded run logs.
//!
//! Each run keeps the bytes its chunks hold (`runs.log_bytes`) and whether
//! the cap was hit (`runs.log_truncated`), so an append reads one row and
//! writes at most two chunks, all in the caller's transaction.

use paid_core::{AppendLog, LogAppend, LogChunk, LogStream, RunId, TRUNCATION_MARKER, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::OpError;
use crate::rows::{self, LOG_COLUMNS, int, millis};
use crate::runs;

pub(crate) fn append(c: &Connection, req: &AppendLog<'_>) -> Result<LogAppend, OpError> {
    let id = req.run_id;
    let budget: Option<(i64, bool)> = c
        .prepare_cached("SELECT log_bytes, log_truncated FROM runs WHERE id = ?1")?
        .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (used, truncated) = budget.ok_or_else(|| runs::not_found(id))?;
    if truncated {
        return Ok(LogAppend { stored: 0, truncated: true });
    }
    let room = usize::try_from(used).map_or(0, |used| req.cap_bytes.saturating_sub(used));
    let fits = req.text.len() <= room;
    let stored = if fits { req.text.len() } else { floor_char_boundary(req.text, room) };

    let mut seq: u64 = c
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM run_logs WHERE run_id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))?;
    let mut insert = |stream: LogStream, text: &str| -> Result<(), OpError> {
        seq += 1;
        c.prepare_cached(&format!("INSERT INTO run_logs ({LOG_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"))?
            .execute(params![id.to_string(), seq, stream.as_str(), text, millis(req.at)])?;
        Ok(())
    };
    if stored > 0 {
        insert(req.stream, &req.text[..stored])?;
    }
    if !fits {
        insert(LogStream::System, TRUNCATION_MARKER)?;
    }
    c.prepare_cached("UPDATE runs SET log_bytes = log_bytes + ?2, log_truncated = ?3 WHERE id = ?1")?
        .execute(params![id.to_string(), int("log bytes", stored as u64)?, !fits])?;
    Ok(LogAppend { stored, truncated: !fits })
}

/// Deletes the chunks of runs that ended before `finished_before`.
pub(crate) fn prune(c: &Connection, finished_before: Timestamp) -> Result<u64, OpError> {
    let deleted = c
        .prepare_cached(
            "DELETE FROM run_logs WHERE run_id IN (
                 SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1
             )",
        )?
        .execute([millis(finished_before)])?;
    Ok(deleted as u64)
}

/// The largest index `<= max` that falls on a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) fn after(c: &Connection, id: RunId, after: u64) -> Result<Vec<LogChunk>, OpError> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {LOG_COLUMNS} FROM run_logs WHERE run_id = ?1 AND seq > ?2 ORDER BY seq"))?;
    // Past i64::MAX nothing can follow.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    rows::all(&mut stmt, params![id.to_string(), after], rows::log)
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
