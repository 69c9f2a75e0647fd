//! The filter evaluator on the fan-out path: 10,000 distinct compiled filters (varied shapes:
//! equality, ranges, LIKE, NULL checks, `:each`/`:length`, JSON paths, `@request.auth.*`,
//! macros, nested groups) evaluated against one record event, as one event's fan-out to
//! 10,000 subscribers with their own filters would.
//!
//! A counting global allocator measures allocations per evaluation (printed before the
//! timings); criterion reports the time per 10,000 evaluations (divide by 10,000 for ns per
//! evaluation; the printed line does it).
//!
//! Run: `cargo bench --bench filter`

use criterion::{Criterion, Throughput, black_box, criterion_group};
use ringcast::filter::{FieldKind, Filter, Schema};
use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 10_000;

fn schema() -> Schema {
    Schema::new()
        .field("id", FieldKind::Text)
        .field("title", FieldKind::Text)
        .field("status", FieldKind::Select { multiple: false })
        .field("tags", FieldKind::Select { multiple: true })
        .field("views", FieldKind::Number)
        .field("published", FieldKind::Bool)
        .field("author", FieldKind::Relation { multiple: false })
        .field("editors", FieldKind::Relation { multiple: true })
        .field("meta", FieldKind::Json)
        .field("created", FieldKind::Text)
}

fn record() -> Value {
    json!({
        "id": "rec0000000001", "collectionId": "pbc_1", "collectionName": "posts",
        "title": "Realtime at the edge", "status": "published", "tags": ["rust", "sse", "edge"],
        "views": 1234, "published": true, "author": "user000000042",
        "editors": ["user000000007", "user000000042"],
        "meta": {"lang": "en", "score": 4.5, "flags": {"pinned": false}},
        "created": "2026-01-02 03:04:05.678Z",
    })
}

/// Filter `i`: one of a dozen shapes, each with its own constants, so all 10,000 differ.
fn filter_text(i: usize) -> String {
    let user = format!("user{:09}", i % 100);
    match i % 12 {
        0 => format!("status = \"published\" && author = \"{user}\""),
        1 => format!("views > {} && views < {}", i, i * 3),
        2 => format!("title ~ \"edge{i}\" || title ~ \"Realtime\""),
        3 => format!("tags:each ?= \"tag{i}\" || tags ?~ \"rust\""),
        4 => format!("editors:each ?= @request.auth.id && views >= {i}"),
        5 => format!("meta.lang = \"en\" && meta.score > {}.5", i % 5),
        6 => format!("status = \"published\" && author = @request.auth.id || views = {i}"),
        7 => format!(
            "(published = true && tags:length >= {}) || status != \"draft{i}\"",
            i % 4
        ),
        8 => format!("created > \"2020-01-01\" && created < @now && id != \"x{i}\""),
        9 => format!("meta.flags.pinned = false && title != null && views != {i}"),
        10 => {
            format!("@request.auth.verified = true && author = \"{user}\" || tags:each = \"x{i}\"")
        }
        _ => format!("title:lower ~ \"real{}\" && status ?= \"published\"", i % 7),
    }
}

fn evaluate_all(filters: &[Filter], record: &Value, auth: &Value, now: SystemTime) -> usize {
    filters
        .iter()
        .filter(|f| f.matches(black_box(record), Some(auth), now))
        .count()
}

fn prepare() -> (Vec<Filter>, Value, Value) {
    let schema = schema();
    let filters: Vec<Filter> = (0..N)
        .map(|i| match Filter::compile_with(&filter_text(i), &schema) {
            Ok(f) => f,
            Err(e) => panic!("filter {i}: {e}"),
        })
        .collect();
    let auth = json!({"id": "user000000042", "collectionId": "_pb_users_auth_",
                      "collectionName": "users", "verified": true, "email": "a@b.c"});
    (filters, record(), auth)
}

/// Allocations and time per evaluation, printed once.
fn report() {
    let (filters, record, auth) = prepare();
    let now = SystemTime::now();
    let matched = evaluate_all(&filters, &record, &auth, now); // warm-up
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(evaluate_all(&filters, &record, &auth, now));
    }
    let elapsed = start.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let evals = (rounds * N) as f64;
    println!(
        "filter: {N} distinct filters, {matched} match the event; {:.1} ns and {:.3} allocations per evaluation",
        elapsed.as_nanos() as f64 / evals,
        allocations as f64 / evals
    );
    let mut per_shape = [0usize; 12];
    for (i, f) in filters.iter().enumerate() {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        black_box(f.matches(&record, Some(&auth), now));
        per_shape[i % 12] += ALLOCATIONS.load(Ordering::Relaxed) - before;
    }
    println!(
        "filter: allocations per evaluation by shape (0-11): {:?}",
        per_shape.map(|a| a as f64 / (N / 12) as f64)
    );
}

fn bench(c: &mut Criterion) {
    let (filters, record, auth) = prepare();
    let now = SystemTime::now();
    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("10000_distinct_filters_one_event", |b| {
        b.iter(|| evaluate_all(&filters, &record, &auth, now))
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
