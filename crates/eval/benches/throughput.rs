//! Evaluation throughput: episodes and steps per second for the expert policy, through the
//! whole runner (prompting, parsing, stepping). Uses the household world when it is
//! registered, else the tiny line world, and says which.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stepagent_env::{registry, Split, TaskId, WorldRef};
use stepagent_policy::policies::ExpertPolicy;
use stepagent_policy::runner::{RunConfig, Runner};
use stepagent_policy::toy::LineWorld;

fn world() -> WorldRef {
    match registry::open("household", &serde_json::Value::Null) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("household world unavailable ({e}); benchmarking the line world");
            LineWorld::default().shared()
        }
    }
}

fn bench(c: &mut Criterion) {
    let world = world();
    let n = world.num_tasks(Split::Unseen).min(100);
    let tasks: Vec<TaskId> = (0..n).map(|i| TaskId::new(Split::Unseen, i)).collect();
    let one_thread = RunConfig { workers: 1, ..RunConfig::default() };
    // Count the steps once: the expert is deterministic, so every iteration takes as many.
    let steps: usize = Runner::new(&*world, &ExpertPolicy, one_thread.clone())
        .run(&tasks, &mut |_| Ok(()))
        .unwrap()
        .iter()
        .map(|e| e.steps)
        .sum();
    let name = world.name().to_string();
    for (unit, count) in [("episodes", n as u64), ("steps", steps as u64)] {
        let mut g = c.benchmark_group(format!("eval_expert_{name}_{unit}"));
        g.throughput(Throughput::Elements(count));
        g.measurement_time(Duration::from_secs(5));
        g.sample_size(10);
        g.bench_function("1_thread", |b| {
            b.iter(|| {
                Runner::new(&*world, &ExpertPolicy, one_thread.clone())
                    .run(&tasks, &mut |_| Ok(()))
                    .unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
