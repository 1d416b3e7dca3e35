//! Loop detection: is the model still making progress?

use std::collections::HashMap;

use paid_core::ToolCall;

/// Tracks the calls of one agent iteration. Two signs of a loop:
/// - the same call (same tool, same arguments) `repeat_limit` times with no
///   file change in between;
/// - `idle_limit` turns in a row that changed no file.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    repeat_limit: u32,
    idle_limit: u32,
    seen: HashMap<String, u32>,
    idle_turns: u32,
}

impl Progress {
    pub fn new(repeat_limit: u32, idle_limit: u32) -> Self {
        Self { repeat_limit: repeat_limit.max(1), idle_limit: idle_limit.max(1), seen: HashMap::new(), idle_turns: 0 }
    }

    /// Counts `call` before it runs; `Some(reason)` when it is one repeat
    /// too many.
    pub fn call(&mut self, call: &ToolCall) -> Option<String> {
        // serde_json's maps are sorted, so equal arguments serialize equally.
        let key = format!("{} {}", call.name, call.arguments);
        let n = self.seen.entry(key.clone()).or_insert(0);
        *n += 1;
        (*n >= self.repeat_limit).then(|| {
            let shown: String = key.chars().take(200).collect();
            format!("the same tool call was made {n} times without any file changing in between: {shown}")
        })
    }

    /// Ends a turn; `Some(reason)` when too many turns changed nothing.
    pub fn turn_end(&mut self, changed: bool) -> Option<String> {
        if changed {
            self.seen.clear();
            self.idle_turns = 0;
            return None;
        }
        self.idle_turns += 1;
        (self.idle_turns >= self.idle_limit).then(|| format!("no file changed in the last {} turns", self.idle_turns))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(name: &str, args: serde_json::Value) -> ToolCall {
        ToolCall { id: "x".into(), name: name.into(), arguments: args }
    }

    #[test]
    fn repeats_count_until_a_file_changes() {
        let mut p = Progress::new(3, 100);
        let read = call("read_file", json!({"path": "a", "limit": 5}));
        let same = call("read_file", json!({"limit": 5, "path": "a"}));
        assert_eq!(p.call(&read), None);
        assert_eq!(p.call(&call("read_file", json!({"path": "b"}))), None);
        assert_eq!(p.call(&same), None);
        assert_eq!(p.turn_end(true), None);
        assert_eq!(p.call(&read), None, "a change resets the counts");
        assert_eq!(p.call(&read), None);
        let reason = p.call(&read).unwrap();
        assert!(reason.starts_with("the same tool call was made 3 times"), "{reason}");
    }

    #[test]
    fn idle_turns_end_in_a_reason() {
        let mut p = Progress::new(3, 2);
        assert_eq!(p.turn_end(false), None);
        assert_eq!(p.turn_end(true), None);
        assert_eq!(p.turn_end(false), None);
        assert_eq!(p.turn_end(false), Some("no file changed in the last 2 turns".into()));
    }
}
