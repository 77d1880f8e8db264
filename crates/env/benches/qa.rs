//! World steps per second of the QA world: replaying recorded expert episodes (searches of
//! exact titles, finish), plus the not-found search that queries the BM25 index.
//!
//! `cargo bench -p stepagent-env --bench qa`; steps/s = the reported elements/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stepagent_env::qa::{QaConfig, QaWorld};
use stepagent_env::{Environment, Split, TaskId, World};

fn bench(c: &mut Criterion) {
    let world = QaWorld::generated(&QaConfig::default()).unwrap();
    let mut env = world.env();
    let episodes: Vec<(TaskId, Vec<String>)> = (0..100)
        .map(|i| {
            let task = TaskId::new(Split::Unseen, i);
            env.reset(task, 0).unwrap();
            let mut actions = Vec::new();
            while let Some(s) = env.expert_step() {
                env.step(&s.action).unwrap();
                actions.push(s.action);
            }
            (task, actions)
        })
        .collect();
    let steps: usize = episodes.iter().map(|(_, a)| a.len()).sum();
    let mut group = c.benchmark_group("qa");
    group.throughput(Throughput::Elements(steps as u64));
    group.bench_function("expert_replay_100_episodes", |b| {
        b.iter(|| {
            for (task, actions) in &episodes {
                env.reset(*task, 0).unwrap();
                for a in actions {
                    std::hint::black_box(env.step(a).unwrap());
                }
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("search_not_found_step", |b| {
        b.iter(|| {
            env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
            std::hint::black_box(env.step("search[silent harbor director]").unwrap());
        })
    });
    group.finish();
    c.bench_function("qa/build_world_24_regions", |b| {
        b.iter(|| QaWorld::generated(&QaConfig::default()).unwrap().num_tasks(Split::Train))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
