//! A policy that misbehaves on request, to test that essync contains policies: not an example.
//!
//! The behaviour is chosen per item by the document's index (for a conflict: the Elasticsearch
//! version's index, else the Cassandra version's):
//!
//! | index | does |
//! | --- | --- |
//! | `trap` | panics (the component traps) |
//! | `loop` | loops forever |
//! | `alloc` | allocates without bound |
//! | `wrong-length` | answers the whole batch with one item too many |
//! | `read-file` | reads `/etc/passwd`; a transform with its text if that worked, else a refusal with the error |
//! | `read-env` | reads the environment and the arguments; a transform with them if any, else a refusal |
//! | `sleep` | sleeps for an hour |
//! | `clock` | refuses with the wall clock's reading (in milliseconds) as the reason |
//! | `bad-json` | transforms or writes a document whose content is not JSON |
//! | `wrong-id` | transforms or writes a document with another id |
//! | `log` | logs its index at every level, then keeps / leaves unchanged |
//! | ending in `_move-out` | transforms or writes the document into the index `not-synced-by-essync` |
//! | ending in `_hold` | logs `misbehaving policy holds ID`, computes for about a second, then behaves |
//! | anything else | keeps / leaves unchanged |

use std::time::{SystemTime, UNIX_EPOCH};

use essync_policy::{Candidate, Conflict, Document, Level, Resolution, Verdict, log};

/// The steps of computation an `_hold` call takes (about a second on a current core).
const HOLD_STEPS: u64 = 2_500_000_000;

/// The misbehaving policy.
pub struct Misbehaving;

/// What the policy does for one item, chosen by the index (when it returns at all).
enum Act {
    /// Keep / leave unchanged.
    Behave,
    /// Refuse with this reason.
    Refuse(String),
    /// Transform / write this document.
    Leak(Document),
}

fn act(document: &Document) -> Act {
    match document.index.as_str() {
        "trap" => panic!("misbehaving policy: trap requested for {}", document.id),
        "loop" => loop {
            std::hint::black_box(());
        },
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Act::Behave
        }
        "read-file" => match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => Act::Leak(with_content(document, &text)),
            Err(e) => Act::Refuse(format!("read-file: {e}")),
        },
        "read-env" => {
            let found: Vec<String> = std::env::vars()
                .map(|(k, v)| format!("{k}={v}"))
                .chain(std::env::args())
                .collect();
            if found.is_empty() {
                Act::Refuse("read-env: nothing to read".to_string())
            } else {
                Act::Leak(with_content(document, &found.join("\n")))
            }
        }
        "clock" => {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            Act::Refuse(format!("clock: {millis}"))
        }
        "bad-json" => {
            let mut bad = document.clone();
            bad.content = "{not json".to_string();
            Act::Leak(bad)
        }
        "wrong-id" => {
            let mut other = document.clone();
            other.id = "00000000-0000-4000-8000-000000000000".to_string();
            Act::Leak(other)
        }
        "log" => {
            for level in [
                Level::Trace,
                Level::Debug,
                Level::Info,
                Level::Warn,
                Level::Error,
            ] {
                log(
                    level,
                    &format!("misbehaving policy logs {}", document.index),
                );
            }
            Act::Behave
        }
        index if index.ends_with("_hold") => {
            // A call that takes a while, announced first: a test writes to the stores while
            // essync waits on it, between its reads and its writes. (A policy's clocks stand
            // still and it cannot sleep, so the wait is computation.)
            log(
                Level::Info,
                &format!("misbehaving policy holds {}", document.id),
            );
            let mut x = 0u64;
            for i in 0..HOLD_STEPS {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            std::hint::black_box(x);
            Act::Behave
        }
        index if index.ends_with("_move-out") => {
            let mut moved = document.clone();
            moved.index = "not-synced-by-essync".to_string();
            Act::Leak(moved)
        }
        _ => Act::Behave,
    }
}

fn with_content(document: &Document, text: &str) -> Document {
    let mut leaked = document.clone();
    leaked.content = format!("{{\"leaked\":{}}}", json_string(text));
    leaked
}

fn json_string(text: &str) -> String {
    let mut escaped = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c if (c as u32) < 0x20 => escaped.push_str(&format!("\\u{:04x}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped.push('"');
    escaped
}

fn answer<T>(act: Act, behave: T, leak: impl FnOnce(Document) -> T) -> Result<T, String> {
    match act {
        Act::Behave => Ok(behave),
        Act::Refuse(reason) => Err(reason),
        Act::Leak(document) => Ok(leak(document)),
    }
}

impl essync_policy::Policy for Misbehaving {
    fn filter(candidate: Candidate) -> Result<Verdict, String> {
        answer(act(&candidate.document), Verdict::Keep, Verdict::Transform)
    }

    fn resolve(conflict: Conflict) -> Result<Resolution, String> {
        match conflict
            .elasticsearch
            .as_ref()
            .or(conflict.cassandra.as_ref())
        {
            Some(document) => answer(act(document), Resolution::Unchanged, Resolution::Write),
            None => Ok(Resolution::Unchanged),
        }
    }
}

/// Batches containing a `wrong-length` item get one answer too many.
fn pad<T: Clone>(mut answers: Vec<Result<T, String>>, wrong: bool) -> Vec<Result<T, String>> {
    if wrong {
        answers.push(Err("one answer too many".to_string()));
    }
    answers
}

impl essync_policy::bindings::exports::essync::policy::about::Guest for Misbehaving {
    fn needs() -> essync_policy::PolicyNeeds {
        essync_policy::needs_of::<Misbehaving>()
    }
}

impl essync_policy::bindings::exports::essync::policy::filter::Guest for Misbehaving {
    fn filter(batch: Vec<Candidate>) -> Vec<Result<Verdict, String>> {
        let wrong = batch.iter().any(|c| c.document.index == "wrong-length");
        pad(essync_policy::filter_batch::<Misbehaving>(batch), wrong)
    }
}

impl essync_policy::bindings::exports::essync::policy::resolver::Guest for Misbehaving {
    fn resolve(batch: Vec<Conflict>) -> Vec<Result<Resolution, String>> {
        let wrong = batch.iter().any(|c| {
            c.elasticsearch
                .iter()
                .chain(c.cassandra.iter())
                .any(|d| d.index == "wrong-length")
        });
        pad(essync_policy::resolve_batch::<Misbehaving>(batch), wrong)
    }
}

// The Guest traits are implemented by hand above (to answer whole batches wrongly), so the
// component glue is exported directly rather than through `essync_policy::export!`.
#[cfg(target_arch = "wasm32")]
essync_policy::bindings::export_component!(Misbehaving with_types_in essync_policy::bindings);

#[cfg(test)]
mod tests {
    use super::*;
    use essync_policy::bindings::exports::essync::policy::filter::Guest;
    use essync_policy::{Side, testing};

    fn candidate(index: &str) -> Candidate {
        testing::candidate(Side::Cassandra, testing::doc_in(index, 1, "{}"))
    }

    #[test]
    fn ordinary_documents_are_kept() {
        assert_eq!(
            <Misbehaving as Guest>::filter(vec![candidate("books")]),
            vec![Ok(Verdict::Keep)]
        );
    }

    #[test]
    fn wrong_length_batches_get_an_extra_answer() {
        let answers = <Misbehaving as Guest>::filter(vec![candidate("wrong-length")]);
        assert_eq!(answers.len(), 2);
    }

    #[test]
    fn leaks_are_valid_json() {
        let leaked = with_content(&candidate("x").document, "a\"b\\c\nd");
        assert_eq!(leaked.content, r#"{"leaked":"a\"b\\c\u000ad"}"#);
    }
}
