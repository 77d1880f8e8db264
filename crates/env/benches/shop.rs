//! World steps per second of the shop: replaying recorded expert episodes (search, paging,
//! product pages, options, buying), so the figure is the world's cost, not the expert's.
//!
//! `cargo bench -p stepagent-env --bench shop`; steps/s = the reported elements/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stepagent_env::shop::{ShopConfig, ShopWorld};
use stepagent_env::{Environment, Split, TaskId, World};

fn record(world: &ShopWorld, tasks: usize) -> Vec<(TaskId, Vec<String>)> {
    let mut env = world.env();
    (0..tasks)
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
        .collect()
}

fn bench(c: &mut Criterion) {
    let world = ShopWorld::generated(&ShopConfig::default()).unwrap();
    let episodes = record(&world, 50);
    let steps: usize = episodes.iter().map(|(_, a)| a.len()).sum();
    let mut group = c.benchmark_group("shop");
    group.throughput(Throughput::Elements(steps as u64));
    group.bench_function("expert_replay_50_episodes", |b| {
        let mut env = world.env();
        b.iter(|| {
            for (task, actions) in &episodes {
                env.reset(*task, 0).unwrap();
                for a in actions {
                    std::hint::black_box(env.step(a).unwrap());
                }
            }
        })
    });
    // The expensive step on its own: a BM25 search over the catalogue.
    group.throughput(Throughput::Elements(1));
    group.bench_function("search_step", |b| {
        let mut env = world.env();
        b.iter(|| {
            env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
            std::hint::black_box(
                env.step("search[long lasting deodorant that is paraben free]").unwrap(),
            );
        })
    });
    group.finish();
    c.bench_function("shop/build_world_3000_products", |b| {
        b.iter(|| ShopWorld::generated(&ShopConfig::default()).unwrap().num_tasks(Split::Train))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
