//! The content helpers on the vectors every SDK is tested on (`content-vectors.json`, read by the
//! Python and JavaScript SDKs' tests too): numbers, their order, refusals, the canonical form.

use std::cmp::Ordering;

use essync_policy::testing::doc;
use essync_policy::{Document, json};
use serde_json::{Number, Value};

fn vectors(section: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(include_str!("content-vectors.json"))
        .expect("content-vectors.json is JSON");
    all[section]["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} cases"))
        .clone()
}

fn text<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} of {case}"))
}

fn document(content: &str) -> Document {
    doc(1, content)
}

/// A field of the content, which must be a number.
fn number(content: &str, field: &str) -> Number {
    match document(content).content_object() {
        Ok(object) => match object.get(field) {
            Some(Value::Number(n)) => n.clone(),
            other => panic!("{field} of {content} is not a number: {other:?}"),
        },
        Err(reason) => panic!("{content} refused: {reason}"),
    }
}

/// The spelling `serde_json` keeps: the digits as written, an exponent as `e+N` or `e-N`.
fn kept_spelling(text: &str) -> String {
    match text.split_once(['e', 'E']) {
        Some((digits, exponent)) if exponent.starts_with(['+', '-']) => {
            format!("{digits}e{exponent}")
        }
        Some((digits, exponent)) => format!("{digits}e+{exponent}"),
        None => text.to_string(),
    }
}

/// Numbers compared as the SDK's documentation says: exactly when both are integers, else as
/// doubles.
fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    match (a.as_i128(), b.as_i128()) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

#[test]
fn numbers_are_numbers_with_their_exact_spelling_kept() {
    for case in vectors("numbers") {
        let name = text(&case, "name");
        let content = text(&case, "content");
        let n = number(content, text(&case, "field"));
        assert_eq!(n.as_str(), kept_spelling(text(&case, "text")), "{name}");
        let float: f64 = text(&case, "float").parse().expect("a float");
        assert_eq!(n.as_f64(), Some(float), "{name}");
        let integer = case["integer"]
            .as_str()
            .map(|i| i.parse::<i128>().expect("i128"));
        assert_eq!(n.as_i128(), integer, "{name}");
        // Written back, the object is the canonical text of the content.
        let mut written = document("{}");
        written.set_content(&document(content).content_object().expect("an object"));
        assert_eq!(written.content, json::canonical(content), "{name}");
    }
}

#[test]
fn numbers_compare_by_value_not_by_spelling() {
    for case in vectors("orders") {
        let field = text(&case, "field");
        let (a, b) = (
            number(text(&case, "a"), field),
            number(text(&case, "b"), field),
        );
        let expected = case["order"].as_i64().expect("an order").cmp(&0);
        assert_eq!(compare(&a, &b), Some(expected), "{}", text(&case, "name"));
    }
}

#[test]
fn content_that_is_not_an_object_is_refused_with_the_reason() {
    for case in vectors("refused") {
        let reason = document(text(&case, "content"))
            .content_object()
            .expect_err(text(&case, "name"));
        assert!(reason.contains(text(&case, "reason")), "{reason}");
    }
}

#[test]
fn the_canonical_form_is_the_same_in_every_sdk() {
    for case in vectors("canonical") {
        assert_eq!(
            json::canonical(text(&case, "text")),
            text(&case, "canonical"),
            "{}",
            text(&case, "name")
        );
    }
}
