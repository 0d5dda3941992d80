//! Form and URL fields, and the tasks screen's filters, which live in the URL
//! so that a filtered view can be bookmarked, shared and refreshed.

use leasehold_core::{validate, Error, ListFilter, Result, TaskState, Timestamp};

use crate::{PAGE_ROWS_DEFAULT, PAGE_ROWS_MAX};

/// Decoded `application/x-www-form-urlencoded` pairs, repeated keys kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parse a query string (without `?`).
    pub fn parse(q: &str) -> Fields {
        Fields(form_urlencoded::parse(q.as_bytes()).into_owned().collect())
    }

    /// From already decoded pairs.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Fields {
        Fields(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, `None` when empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The tasks screen's filters and position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskQuery {
    pub states: Vec<TaskState>,
    pub queue: Option<String>,
    pub owner: Option<String>,
    pub stale: bool,
    /// Text to find in task id or branch (case-insensitive).
    pub text: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

impl TaskQuery {
    /// Parse and validate; bad values are `invalid_input` naming what was expected.
    pub fn from_fields(f: &Fields) -> Result<TaskQuery> {
        let mut states = Vec::new();
        for s in f.all("state") {
            if s.is_empty() {
                continue;
            }
            let st: TaskState = s.parse()?;
            if !states.contains(&st) {
                states.push(st);
            }
        }
        states.sort();
        let queue = f.text("queue");
        if let Some(q) = &queue {
            validate::id("queue", q)?;
        }
        let owner = f.text("owner");
        if let Some(o) = &owner {
            validate::owner(o)?;
        }
        let stale = match f.get("stale").unwrap_or("") {
            "" | "0" | "false" => false,
            "1" | "true" | "on" => true,
            other => {
                return Err(Error::InvalidInput(format!(
                    "filter stale={other:?} is not understood; expected 1 or 0"
                )))
            }
        };
        let text = f.text("q");
        if let Some(t) = &text {
            if t.len() > 128 {
                return Err(Error::InvalidInput(format!(
                    "search text is {} bytes; at most 128 (ids are at most 128 characters)",
                    t.len()
                )));
            }
        }
        let cursor = f.text("cursor");
        if let Some(c) = &cursor {
            leasehold_core::store::decode_cursor(Some(c))?;
        }
        let limit = match f.text("limit") {
            None => PAGE_ROWS_DEFAULT,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=PAGE_ROWS_MAX).contains(&n) => n,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "page size {l:?} is not a number from 1 to {PAGE_ROWS_MAX}"
                    )))
                }
            },
        };
        Ok(TaskQuery {
            states,
            queue,
            owner,
            stale,
            text,
            cursor,
            limit,
        })
    }

    /// The store filter at `now`.
    pub fn filter(&self, now: Timestamp) -> ListFilter {
        ListFilter {
            states: self.states.clone(),
            queue: self.queue.clone(),
            owner: self.owner.clone(),
            stale_at: self.stale.then_some(now),
        }
    }

    /// The query string for these filters, with `cursor` in place of ours.
    pub fn to_query(&self, cursor: Option<&str>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for st in &self.states {
            s.append_pair("state", st.as_str());
        }
        if let Some(q) = &self.queue {
            s.append_pair("queue", q);
        }
        if let Some(o) = &self.owner {
            s.append_pair("owner", o);
        }
        if self.stale {
            s.append_pair("stale", "1");
        }
        if let Some(t) = &self.text {
            s.append_pair("q", t);
        }
        if self.limit != PAGE_ROWS_DEFAULT {
            s.append_pair("limit", &self.limit.to_string());
        }
        if let Some(c) = cursor {
            s.append_pair("cursor", c);
        }
        s.finish()
    }

    /// Whether `task` matches the text filter (always, without one).
    pub fn text_matches(&self, task: &leasehold_core::Task) -> bool {
        match &self.text {
            None => true,
            Some(t) => {
                let t = t.to_lowercase();
                task.task_id.to_lowercase().contains(&t)
                    || task
                        .branch
                        .as_deref()
                        .is_some_and(|b| b.to_lowercase().contains(&t))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_through_the_query_string() {
        let q = TaskQuery::from_fields(&Fields::parse(
            "state=running&state=dispatched&queue=payments&owner=w%201&stale=1&q=feat%2Fx&limit=20&cursor=s40",
        ))
        .unwrap();
        assert_eq!(q.states, vec![TaskState::Dispatched, TaskState::Running]);
        let again =
            TaskQuery::from_fields(&Fields::parse(&q.to_query(q.cursor.as_deref()))).unwrap();
        assert_eq!(again, q);
    }

    #[test]
    fn bad_filters_are_invalid_input_naming_what_was_expected() {
        for (q, needle) in [
            ("state=sleeping", "expected one of"),
            ("limit=0", "from 1 to"),
            ("limit=100000", "from 1 to"),
            ("stale=maybe", "expected 1 or 0"),
            ("cursor=zzz", "cursor"),
            ("queue=a%20b", "queue"),
        ] {
            let err = TaskQuery::from_fields(&Fields::parse(q)).unwrap_err();
            assert_eq!(err.code(), leasehold_core::ErrorCode::InvalidInput, "{q}");
            assert!(err.message().contains(needle), "{q}: {}", err.message());
        }
    }
}
