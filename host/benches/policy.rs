//! What a policy costs: the embedded default policy per document, in batches of 1, 100 and
//! 1,000 conflicts of ~1 KB documents, next to the same logic as native Rust; and the time to
//! load (compile) and to instantiate a policy.
//!
//! `cargo bench -p essync --bench policy`

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use uuid::Uuid;

use essync::Document;
use essync::policy::{Candidate, Conflict, Policy, PolicyLimits, Side, Version};

const BATCHES: [usize; 3] = [1, 100, 1000];

/// A document of about 1 KB of JSON.
fn document(id: Uuid, n: usize, millis: i64) -> Document {
    let t = Utc
        .timestamp_millis_opt(1_714_557_600_000 + millis)
        .single()
        .expect("a valid time");
    Document::with_id(
        id,
        "books",
        "book",
        json!({
            "title": format!("Book number {n}"),
            "author": "A. N. Author",
            "isbn": format!("978-0-00-{n:06}-0"),
            "pages": 100 + n % 900,
            "tags": ["fiction", "classic", "paperback", "english"],
            "summary": "lorem ipsum dolor sit amet ".repeat(30),
        }),
    )
    .at(t)
}

/// Conflicts where either side is newer (no tie: ties are rare, and cost a JSON parse each).
fn conflicts(count: usize) -> Vec<Conflict> {
    (0..count)
        .map(|n| {
            let id = Uuid::from_u128(n as u128 + 1);
            Conflict {
                id,
                base: Some(document(id, n + 2, 0)),
                // What the default policy gets: it does not ask for the base's content.
                base_content: false,
                elasticsearch: Some(Version::written(document(id, n, (n % 2 * 2) as i64))),
                cassandra: Some(Version::written(document(id, n + 1, 1))),
            }
        })
        .collect()
}

/// Conflicts whose versions have the same timestamp: the tie-break parses both contents.
fn ties(count: usize) -> Vec<Conflict> {
    (0..count)
        .map(|n| {
            let id = Uuid::from_u128(n as u128 + 1);
            Conflict {
                id,
                base: Some(document(id, n + 2, 0)),
                // What the default policy gets: it does not ask for the base's content.
                base_content: false,
                elasticsearch: Some(Version::written(document(id, n, 1))),
                cassandra: Some(Version::written(document(id, n + 1, 1))),
            }
        })
        .collect()
}

fn native(conflict: &Conflict) -> essync_policy::Conflict {
    let document = |d: &Document| essync_policy::Document {
        id: d.id.to_string(),
        index: d.index.clone(),
        doc_type: d.doc_type.clone(),
        timestamp: d.timestamp_millis().unwrap_or_default(),
        stamp: essync_policy::Stamp::Written,
        content: serde_json::to_string(&d.content).unwrap_or_default(),
    };
    let version = |v: &Option<Version>| v.as_ref().map(|v| document(&v.document));
    essync_policy::Conflict {
        id: conflict.id.to_string(),
        base: conflict.base.as_ref().map(document),
        base_content: conflict.base_content,
        elasticsearch: version(&conflict.elasticsearch),
        cassandra: version(&conflict.cassandra),
    }
}

fn resolve(c: &mut Criterion) {
    let policy = Policy::builtin(PolicyLimits::default()).expect("the builtin policy loads");
    let size = serde_json::to_string(
        &conflicts(1)[0]
            .elasticsearch
            .as_ref()
            .unwrap()
            .document
            .content,
    )
    .map(|s| s.len())
    .unwrap_or(0);
    println!("document content: {size} bytes");
    let mut group = c.benchmark_group("resolve");
    for n in BATCHES {
        let batch = conflicts(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("embedded/{n}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |batch| black_box(policy.resolve_blocking(batch)),
                BatchSize::SmallInput,
            )
        });
        let native_batch: Vec<essync_policy::Conflict> = batch.iter().map(native).collect();
        group.bench_function(format!("native/{n}"), |b| {
            b.iter(|| {
                for conflict in &native_batch {
                    black_box(last_write_wins::resolve(black_box(conflict)));
                }
            })
        });
    }
    // What the host pays to turn 1,000 conflicts into the policy's types (content as text).
    let n = 1000;
    let batch = conflicts(n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("conversion-only/{n}"), |b| {
        b.iter(|| black_box(batch.iter().map(native).collect::<Vec<_>>()))
    });
    let batch = ties(n);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("embedded-ties/{n}"), |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| black_box(policy.resolve_blocking(batch)),
            BatchSize::SmallInput,
        )
    });
    let native_batch: Vec<essync_policy::Conflict> = batch.iter().map(native).collect();
    group.bench_function(format!("native-ties/{n}"), |b| {
        b.iter(|| {
            for conflict in &native_batch {
                black_box(last_write_wins::resolve(black_box(conflict)));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("filter");
    let n = 1000;
    let batch: Vec<Candidate> = conflicts(n)
        .into_iter()
        .filter_map(|c| c.elasticsearch)
        .map(|version| Candidate {
            side: Side::Elasticsearch,
            version,
            deleted: false,
        })
        .collect();
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("embedded/{n}"), |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| black_box(policy.filter_blocking(batch)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn load_and_instantiate(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    group.sample_size(10);
    group.bench_function("load (compile) the builtin", |b| {
        b.iter(|| black_box(Policy::builtin(PolicyLimits::default()).expect("loads")))
    });
    group.finish();
    let policy = Policy::builtin(PolicyLimits::default()).expect("the builtin policy loads");
    c.bench_function("policy/instantiate", |b| {
        b.iter(|| policy.probe().expect("instantiates"))
    });
}

criterion_group!(benches, resolve, load_and_instantiate);
criterion_main!(benches);
