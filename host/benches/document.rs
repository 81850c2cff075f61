//! What a document costs essync before any request: its digest (canonical JSON from the text,
//! and SHA-256), reading its content from Cassandra's text (checked, not parsed into values),
//! and, for comparison, parsing that text into a `serde_json::Value`, per document of about 600
//! bytes (an order with nested objects, its keys as an application writes them).
//!
//! `cargo bench -p essync --bench document`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

use essync::Document;
use essync::document::Content;

/// An order like the benchmark's (`bench/src/data.rs`): nested objects, accents, numbers.
fn order(n: usize) -> Value {
    json!({
        "order_id": format!("ORD-{n:08}"),
        "status": "shipped",
        "customer": {"name": "Chloé Lefèvre", "email": format!("c{n}@example.com"), "city": "Gdańsk"},
        "items": [
            {"sku": "A-1", "quantity": 2, "price": 19.99},
            {"sku": "B-22", "quantity": 1, "price": 5.5},
            {"sku": "C-333", "quantity": 4, "price": 120.0}
        ],
        "total": 545.48,
        "revision": n % 7,
        "notes": "leave at the door\nring twice",
        "created_at": "2025-03-01T10:00:00.000Z",
        "updated_at": "2025-03-02T11:30:00.000Z"
    })
}

fn document(c: &mut Criterion) {
    let documents: Vec<Document> = (0..100)
        .map(|n| Document::new("orders", "order", order(n)).at(essync::document::now_millis()))
        .collect();
    let texts: Vec<String> = documents
        .iter()
        .map(|d| d.content_text().to_string())
        .collect();
    let mut group = c.benchmark_group("document");
    group.throughput(Throughput::Elements(documents.len() as u64));
    group.bench_function("digest", |b| {
        b.iter(|| {
            for d in &documents {
                black_box(d.digest());
            }
        })
    });
    group.bench_function("read", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(Content::from_json(text.as_str()).ok());
            }
        })
    });
    group.bench_function("parse_value", |b| {
        b.iter(|| {
            for text in &texts {
                black_box(serde_json::from_str::<Value>(text).ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, document);
criterion_main!(benches);
