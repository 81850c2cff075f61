//! A failed policy's own account of its failure: the message and the place its language's
//! runtime wrote to stderr before the component trapped.
//!
//! A trap itself only says which WebAssembly instruction stopped the call (`unreachable`, for a
//! Rust panic, a Python exception and a JavaScript error alike). What a policy author needs is
//! what the runtime printed just before: the panic message and its location (Rust), the
//! exception and its traceback (componentize-py), the error and its stack (componentize-js).
//! [`explain`] reads those from the captured stderr, drops what the language runtimes add around
//! them (componentize-py's own panic, componentize-js's glue frames, the backtrace note), and
//! puts them on one line, innermost place first.

use super::sandbox::cut;

/// Longest message kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 400;
/// Most callers named after the place of the failure.
const MAX_CALLERS: usize = 4;
/// Files of the policy SDKs: a frame in one is named as the place of a failure, never as a
/// caller (`answer_each` and `answerEach` call every policy function).
const SDK_FILES: [&str; 2] = ["essync_policy.py", "essync-policy.js"];

/// What a failed policy wrote to stderr, on one line: its message and, where its language gives
/// them, the place and the callers (`KeyError: 'version' (at policy.py line 10 in version,
/// called from policy.py line 14 in resolve)`). `None` when it wrote nothing.
pub(super) fn explain(stderr: &[String]) -> Option<String> {
    python_exception(stderr)
        .or_else(|| javascript_error(stderr))
        .or_else(|| rust_panic(stderr))
        .map(|failure| failure.to_string())
        .or_else(|| last_lines(stderr))
}

/// The message of a failure and where it happened.
struct Failure {
    message: String,
    /// Innermost first.
    frames: Vec<Frame>,
    /// How the language names the innermost place (`at`, `panicked at`).
    verb: &'static str,
}

struct Frame {
    /// `policy.py line 10`, `policy.js:5:3`, `src/lib.rs:45:19`.
    place: String,
    /// The function, when the language names it.
    function: Option<String>,
}

impl Frame {
    fn in_sdk(&self) -> bool {
        SDK_FILES.iter().any(|file| {
            self.place
                .rsplit('/')
                .next()
                .unwrap_or("")
                .starts_with(file)
        })
    }
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some(function) => write!(f, "{} in {function}", self.place),
            None => f.write_str(&self.place),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(cut(&self.message, MAX_MESSAGE_BYTES))?;
        let Some((innermost, callers)) = self.frames.split_first() else {
            return Ok(());
        };
        write!(f, " ({} {innermost}", self.verb)?;
        let callers: Vec<String> = callers
            .iter()
            .filter(|frame| !frame.in_sdk())
            .take(MAX_CALLERS)
            .map(Frame::to_string)
            .collect();
        if !callers.is_empty() {
            write!(f, ", called from {}", callers.join(", "))?;
        }
        f.write_str(")")
    }
}

/// A Python exception as componentize-py prints it: the traceback (most recent call last),
/// the exception, then the runtime's own panic, which says nothing more.
fn python_exception(lines: &[String]) -> Option<Failure> {
    let start = lines
        .iter()
        .rposition(|line| line.starts_with("Traceback (most recent call last)"))?;
    let mut frames = Vec::new();
    let mut message = Vec::new();
    for line in &lines[start + 1..] {
        if let Some(frame) = python_frame(line) {
            frames.push(frame);
        } else if line.starts_with(' ') && message.is_empty() {
            // A frame's source line, or its `^^^` marks.
        } else if line.starts_with("thread '") || line.starts_with("note: run with") {
            break;
        } else {
            message.push(line.trim());
        }
    }
    if message.is_empty() {
        return None;
    }
    frames.reverse();
    Some(Failure {
        message: message.join(" / "),
        frames,
        verb: "at",
    })
}

/// `  File "/0/policy.py", line 10, in version` (componentize-py mounts each source folder
/// under `/N/`: the file is named as its author knows it).
fn python_frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (path, rest) = rest.split_once("\", line ")?;
    let (number, function) = match rest.split_once(", in ") {
        Some((number, function)) => (number, Some(function.trim().to_string())),
        None => (rest.trim(), None),
    };
    let file = match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
        Some((mount, file)) if mount.bytes().all(|b| b.is_ascii_digit()) => file,
        _ => path,
    };
    Some(Frame {
        place: format!("{file} line {number}"),
        function,
    })
}

/// A JavaScript error as componentize-js prints it: the message, `Stack:`, one frame a line
/// (`name@file:line:column`), then the abort.
fn javascript_error(lines: &[String]) -> Option<Failure> {
    let stack = lines.iter().rposition(|line| line.trim() == "Stack:")?;
    let message = lines[..stack].last()?.trim().to_string();
    let frames = lines[stack + 1..]
        .iter()
        .take_while(|line| line.starts_with(' '))
        .filter_map(|line| {
            let (function, place) = line.trim().rsplit_once('@')?;
            // componentize-js's generated glue between essync and the policy's exports.
            let glue = place.contains("/sources/initializer.js") || function.starts_with("export_");
            (!glue).then(|| Frame {
                place: place.to_string(),
                function: (!function.is_empty()).then(|| function.to_string()),
            })
        })
        .collect();
    Some(Failure {
        message,
        frames,
        verb: "at",
    })
}

/// A Rust panic: `thread '<unnamed>' (1) panicked at src/lib.rs:45:19:` and the message on the
/// lines after it.
fn rust_panic(lines: &[String]) -> Option<Failure> {
    let start = lines
        .iter()
        .rposition(|line| line.starts_with("thread '") && line.contains(" panicked at "))?;
    let (_, place) = lines[start].split_once(" panicked at ")?;
    let message: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|line| !line.starts_with("note: run with"))
        .map(|line| line.trim())
        .collect();
    Some(Failure {
        message: if message.is_empty() {
            "the policy panicked".to_string()
        } else {
            message.join(" / ")
        },
        frames: vec![Frame {
            place: place.trim().trim_end_matches(':').to_string(),
            function: None,
        }],
        verb: "panicked at",
    })
}

/// The last lines of what a runtime nobody here knows wrote, joined into one.
fn last_lines(lines: &[String]) -> Option<String> {
    let lines: Vec<&str> = lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let start = lines.len().saturating_sub(3);
    let tail = lines[start..].join(" / ");
    (!tail.is_empty()).then(|| format!("stderr: {}", cut(&tail, 500)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_python_exception_is_its_message_and_traceback_once() {
        // What componentize-py 0.25 writes for a KeyError raised in a policy.
        let stderr = lines(
            "Traceback (most recent call last):\n\
             \x20 File \"/0/policy.py\", line 26, in resolve\n\
             \x20 File \"/1/essync_policy.py\", line 45, in answer_each\n\
             \x20 File \"/0/policy.py\", line 14, in resolve\n\
             \x20 File \"/0/policy.py\", line 10, in version\n\
             KeyError: 'version'\n\
             thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:\n\
             Python function threw an unexpected exception\n\
             note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        assert_eq!(
            explain(&stderr).unwrap(),
            "KeyError: 'version' (at policy.py line 10 in version, called from policy.py line \
             14 in resolve, policy.py line 26 in resolve)"
        );
    }

    #[test]
    fn a_python_traceback_with_source_lines_keeps_the_exception_alone() {
        let stderr = lines(
            "Traceback (most recent call last):\n\
             \x20 File \"/0/policy.py\", line 3, in <module>\n\
             \x20   import missing\n\
             \x20   ^^^^^^^^^^^^^^\n\
             ModuleNotFoundError: No module named 'missing'",
        );
        assert_eq!(
            explain(&stderr).unwrap(),
            "ModuleNotFoundError: No module named 'missing' (at policy.py line 3 in <module>)"
        );
    }

    #[test]
    fn a_javascript_error_is_its_message_and_stack_without_the_glue() {
        // What componentize-js 0.23 writes for a TypeError thrown in a policy.
        let stderr = lines(
            "can't access property \"major\", fields.version is undefined\n\
             Stack:\n\
             \x20 version@policy.js:5:3\n\
             \x20 resolve@policy.js:9:14\n\
             \x20 answerEach/<@essync-policy.js:30:32\n\
             \x20 answerEach@essync-policy.js:28:16\n\
             \x20 resolve@policy.js:14:57\n\
             \x20 export_resolver_0_2_0$resolve@/tmp/e31650c3bf0c/sources/initializer.js:437:15\n\
             Redirecting call to abort() to mozalloc_abort",
        );
        assert_eq!(
            explain(&stderr).unwrap(),
            "can't access property \"major\", fields.version is undefined (at policy.js:5:3 in \
             version, called from policy.js:9:14 in resolve, policy.js:14:57 in resolve)"
        );
    }

    #[test]
    fn a_rust_panic_is_its_message_and_location() {
        let stderr = lines(
            "thread '<unnamed>' (1) panicked at src/lib.rs:45:19:\n\
             no version in 6f1c1b0e\n\
             note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        assert_eq!(
            explain(&stderr).unwrap(),
            "no version in 6f1c1b0e (panicked at src/lib.rs:45:19)"
        );
    }

    #[test]
    fn a_failure_in_the_sdk_names_its_place_there() {
        let stderr = lines(
            "Traceback (most recent call last):\n\
             \x20 File \"/0/policy.py\", line 8, in resolve\n\
             \x20 File \"/1/essync_policy.py\", line 60, in content_object\n\
             TypeError: the JSON object must be str, bytes or bytearray, not NoneType",
        );
        let explained = explain(&stderr).unwrap();
        assert!(
            explained.contains(
                "(at essync_policy.py line 60 in content_object, called from \
                                policy.py line 8 in resolve)"
            ),
            "{explained}"
        );
    }

    #[test]
    fn other_output_is_its_last_lines_and_nothing_is_none() {
        let stderr = lines("one\ntwo\nthree\nfour");
        assert_eq!(explain(&stderr).unwrap(), "stderr: two / three / four");
        assert_eq!(explain(&[]), None);
    }
}
