//! What a core's flush task pays between two write slices of a long fan-out:
//! the loop must park once so that tokio-uring submits the replies and reads
//! queued meanwhile. A timer pause (the old `sleep(200 µs)`) is rounded up to
//! the timer's millisecond, with the core idle while frames wait;
//! [`runtime::park_once`] parks through a no-op on the ring and comes back at
//! once.
//!
//! Run: `cargo bench --bench flush_pause`

use criterion::{Criterion, criterion_group, criterion_main};
use ringcast::runtime;
use std::time::{Duration, Instant};

fn pauses(c: &mut Criterion) {
    let mut group = c.benchmark_group("flush pause");
    group.bench_function("timer sleep(200 µs)", |b| {
        b.iter_custom(|iters| {
            runtime::run(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("runtime::park_once", |b| {
        b.iter_custom(|iters| {
            runtime::run(async move {
                let started = Instant::now();
                for _ in 0..iters {
                    runtime::park_once().await;
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = pauses
}
criterion_main!(benches);
