//! Served steps per second at 1 and 64 concurrent sessions, and the server's memory while
//! 10k sessions are opened and closed. The server runs in this process, so its resident
//! memory is ours.
//!
//!   cargo run --release -p stepagent-serve --example serve_bench -- [WORLD] [SECONDS]
//!
//! WORLD is a registered world (default `household`, falling back to the tiny counting world
//! of the tests when it is not registered).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stepagent_env::{registry, Split, WorldRef};
use stepagent_serve::{ServeConfig, Server};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn post(agent: &ureq::Agent, url: &str, body: Value) -> Value {
    agent.post(url).send_json(body).expect("request").into_json().expect("json")
}

/// One client: episodes back to back (expert actions) until `deadline`; returns steps taken.
fn client(url: &str, tasks: usize, deadline: Instant, offset: usize) -> usize {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let id = post(&agent, &format!("{url}/create"), json!({}))["id"].as_u64().unwrap();
    let mut steps = 0;
    let mut episode = offset;
    while Instant::now() < deadline {
        post(&agent, &format!("{url}/reset"), json!({"id": id, "data_idx": episode % tasks}));
        episode += 1;
        loop {
            let expert: Value =
                agent.get(&format!("{url}/expert?id={id}")).call().unwrap().into_json().unwrap();
            let action = expert.get("action").and_then(Value::as_str).unwrap_or("look").to_string();
            let out = post(&agent, &format!("{url}/step"), json!({"id": id, "action": action}));
            steps += 1;
            if out["done"].as_bool() != Some(false) {
                break;
            }
        }
    }
    post(&agent, &format!("{url}/close"), json!({"id": id}));
    steps
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).cloned().unwrap_or_else(|| "household".to_string());
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let world: WorldRef = match registry::open(&name, &Value::Null) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("world `{name}` unavailable ({e}); using the tests' counting world");
            Arc::new(common::CountWorld)
        }
    };
    let tasks: usize = Split::ALL.iter().map(|s| world.num_tasks(*s)).sum();
    let config = ServeConfig { threads: 64, max_sessions: 20_000, ..Default::default() };
    let server = Server::start(world.clone(), config).unwrap();
    let url = server.url();

    for sessions in [1usize, 64] {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let steps: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..sessions)
                .map(|i| {
                    let url = &url;
                    s.spawn(move || client(url, tasks, deadline, i * 7))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "served_steps", "world": world.name(), "sessions": sessions, "steps": steps,
                   "seconds": (elapsed * 100.0).round() / 100.0,
                   "steps_per_s": (steps as f64 / elapsed).round(),
                   "note": "each step is one /expert GET plus one /step POST"})
        );
    }

    let agent = ureq::agent();
    let mut checkpoints = vec![json!({"sessions_opened": 0, "rss_kib": rss_kib()})];
    for i in 1..=10_000usize {
        let id = post(&agent, &format!("{url}/create"), json!({}))["id"].as_u64().unwrap();
        post(&agent, &format!("{url}/reset"), json!({"id": id, "data_idx": i % tasks}));
        post(&agent, &format!("{url}/close"), json!({"id": id}));
        if i % 2_000 == 0 {
            checkpoints.push(
                json!({"sessions_opened": i, "rss_kib": rss_kib(), "live": server.sessions()}),
            );
        }
    }
    println!(
        "{}",
        json!({"bench": "server_memory", "world": world.name(), "checkpoints": checkpoints})
    );
}
