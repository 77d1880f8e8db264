//! Our `remote` client against our server, on loopback: the same episodes as in-process, real
//! status codes, expiry, the session cap and batched steps.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stepagent_env::remote::{RemoteConfig, RemoteWorld};
use stepagent_env::{
    registry, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef,
};
use stepagent_serve::{ServeConfig, Server};

use common::CountWorld;

type Transcript = (String, Vec<(ExpertStep, StepOutcome, Vec<String>)>);

/// Plays every task with the world's expert; also records the admissible actions.
fn play(world: &dyn World, tasks: &[TaskId]) -> Vec<Transcript> {
    let mut env = world.new_env().unwrap();
    tasks
        .iter()
        .map(|&task| {
            let first = env.reset(task, 1).unwrap();
            let mut turns = Vec::new();
            while let Some(expert) = env.expert_step() {
                let actions = env.admissible_actions();
                let out = env.step(&expert.action).unwrap();
                let done = out.done;
                turns.push((expert, out, actions));
                if done {
                    break;
                }
            }
            (first, turns)
        })
        .collect()
}

fn all_tasks(world: &dyn World, per_split: usize) -> Vec<TaskId> {
    Split::ALL
        .iter()
        .flat_map(|&s| (0..world.num_tasks(s).min(per_split)).map(move |i| TaskId::new(s, i)))
        .collect()
}

fn remote(url: &str) -> RemoteWorld {
    RemoteWorld::new(RemoteConfig { url: url.to_string(), timeout_secs: 10, ..Default::default() })
        .unwrap()
}

#[test]
fn remote_episodes_equal_in_process_ones() {
    let mut worlds: Vec<WorldRef> = vec![Arc::new(CountWorld)];
    // The household world, once registered, gets the same check.
    if let Ok(household) = registry::open("household", &Value::Null) {
        worlds.push(household);
    }
    for world in worlds {
        let server = Server::start(world.clone(), ServeConfig::default()).unwrap();
        let client = remote(&server.url());
        assert_eq!(client.served_world(), world.name());
        assert_eq!(client.instruction(), world.instruction());
        assert_eq!(client.max_steps(), world.max_steps());
        for s in Split::ALL {
            assert_eq!(client.num_tasks(s), world.num_tasks(s), "{} {s}", world.name());
        }
        let tasks = all_tasks(world.as_ref(), 4);
        let local = play(world.as_ref(), &tasks);
        let served = play(&client, &tasks);
        assert_eq!(local, served, "world {}", world.name());
        assert!(local.iter().any(|(_, turns)| turns.last().is_some_and(|t| t.1.won)));
    }
}

#[test]
fn sessions_close_on_drop_and_expire_when_idle() {
    let config = ServeConfig { idle_timeout_secs: 1, ..Default::default() };
    let server = Server::start(Arc::new(CountWorld), config).unwrap();
    let client = remote(&server.url());
    {
        let mut env = client.env().unwrap();
        env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
        assert_eq!(server.sessions(), 1);
    }
    assert_eq!(server.sessions(), 0, "dropping the client env closes the session");

    // A forgotten session (created by hand, never closed) is reaped.
    let agent = ureq::agent();
    let created: Value =
        agent.post(&format!("{}/create", server.url())).call().unwrap().into_json().unwrap();
    assert_eq!(server.sessions(), 1, "{created}");
    let mut waited = Duration::ZERO;
    while server.sessions() > 0 && waited < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    }
    assert_eq!(server.sessions(), 0, "the idle session was not closed");
}

fn post(url: &str, path: &str, body: Value) -> (u16, Value) {
    match ureq::post(&format!("{url}{path}")).send_json(body) {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn get(url: &str, path: &str) -> (u16, Value) {
    match ureq::get(&format!("{url}{path}")).call() {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("{path}: {e}"),
    }
}

#[test]
fn errors_carry_real_status_codes() {
    let config = ServeConfig { max_sessions: 2, ..Default::default() };
    let server = Server::start(Arc::new(CountWorld), config).unwrap();
    let url = server.url();
    let (code, body) = get(&url, "/health");
    assert_eq!(code, 200);
    assert_eq!(body["tasks"], json!({"train": 6, "seen": 3, "unseen": 4}));

    let (_, a) = post(&url, "/create", json!({}));
    let id = a["id"].as_u64().unwrap();
    assert_eq!(post(&url, "/step", json!({"id": id, "action": "inc"})).0, 409, "step before reset");
    assert_eq!(post(&url, "/step", json!({"id": 999, "action": "inc"})).0, 404);
    assert_eq!(post(&url, "/reset", json!({"id": id, "data_idx": 13})).0, 400, "13 tasks: 0..=12");
    let (code, body) = post(&url, "/reset", json!({"id": id, "task": "seen/9"}));
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("seen"), "{body}");
    assert_eq!(get(&url, "/reset").0, 405);
    assert_eq!(get(&url, "/nowhere").0, 404);
    assert_eq!(get(&url, "/observation").0, 400, "no id");

    // data_idx 9 is the first unseen task (6 train + 3 seen).
    let (code, body) = post(&url, "/reset", json!({"id": id, "data_idx": 9, "seed": 0}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["task"], "unseen/0");
    assert_eq!(get(&url, &format!("/observation?id={id}")).1, body["observation"]);
    assert_eq!(
        get(&url, &format!("/available_actions?env_idx={id}")).1,
        json!(["inc", "dec", "submit"])
    );

    let (_, b) = post(&url, "/create", json!({}));
    let (code, body) = post(&url, "/create", json!({}));
    assert_eq!(code, 429, "cap of 2: {body}");
    let id2 = b["id"].as_u64().unwrap();
    assert_eq!(post(&url, "/close", json!({"id": id2})).1, json!({"closed": true}));
    assert_eq!(post(&url, "/close", json!({"id": id2})).0, 404);

    let raw = ureq::post(&format!("{url}/step"))
        .set("Content-Type", "application/json")
        .send_string("{not json");
    assert!(matches!(raw, Err(ureq::Error::Status(400, _))));
}

#[test]
fn batch_steps_match_single_steps() {
    let server = Server::start(Arc::new(CountWorld), ServeConfig::default()).unwrap();
    let url = server.url();
    let ids: Vec<u64> =
        (0..3).map(|_| post(&url, "/create", json!({})).1["id"].as_u64().unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        post(&url, "/reset", json!({"id": id, "task": format!("train/{i}")}));
    }
    let steps: Vec<Value> = ids.iter().map(|id| json!({"id": id, "action": "inc"})).collect();
    let (code, body) = post(&url, "/step", json!({ "steps": steps }));
    assert_eq!(code, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);

    let mut env = CountWorld.new_env().unwrap();
    for (i, r) in results.iter().enumerate() {
        env.reset(TaskId::new(Split::Train, i), 0).unwrap();
        let want = env.step("inc").unwrap();
        assert_eq!(r["observation"], want.observation);
        assert_eq!(r["steps"], 1);
    }
    let dup = json!({"steps": [{"id": ids[0], "action": "inc"}, {"id": ids[0], "action": "dec"}]});
    assert_eq!(post(&url, "/step", dup).0, 400);
    let missing =
        json!({"steps": [{"id": ids[0], "action": "inc"}, {"id": 4242, "action": "inc"}]});
    let (code, body) = post(&url, "/step", missing);
    assert_eq!(code, 200);
    assert_eq!(body["results"][1]["status"], 404, "{body}");
}
