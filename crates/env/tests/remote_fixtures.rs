//! AgentGym's request and response shapes (fixtures written from its servers' code) parse,
//! and the `remote` world drives a fake AgentGym server answering with them: both session
//! variants, retries on 503, and HTTP-200 `{"error": …}` bodies turned into errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use stepagent_env::remote::protocol::{self, Variant};
use stepagent_env::remote::{Indices, RemoteConfig, RemoteSplits, RemoteWorld};
use stepagent_env::{Environment, Split, TaskId, World};

const SCIWORLD: &str = include_str!("../src/remote/fixtures/sciworld.json");
const ALFWORLD: &str = include_str!("../src/remote/fixtures/alfworld.json");
const WEBSHOP: &str = include_str!("../src/remote/fixtures/webshop.json");

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn every_fixture_parses() {
    for (name, text) in [("sciworld", SCIWORLD), ("alfworld", ALFWORLD), ("webshop", WEBSHOP)] {
        let f = fixture(text);
        let id = protocol::parse_create(&f["create"]["response"]).unwrap();
        let variant: Variant = serde_json::from_value(f["variant"].clone()).unwrap();
        assert_eq!(
            f["reset"]["request"][variant.key()],
            json!(id),
            "{name}: reset names the created session"
        );
        let first = protocol::parse_reset(&f["reset"]["response"]).unwrap();
        assert!(!first.is_empty(), "{name}");
        let step = protocol::parse_step(&f["step"]["response"]).unwrap();
        assert!(!step.done && !step.observation.is_empty(), "{name}");
        let last = protocol::parse_step(&f["step_final"]["response"]).unwrap();
        assert!(last.done, "{name}");
        assert!(protocol::parse_observation(&f["observation"]["response"]).is_ok(), "{name}");
        if let Some(a) = f.get("available_actions") {
            assert!(!protocol::parse_actions(&a["response"]).unwrap().is_empty(), "{name}");
        }
        if let Some(e) = f.get("error") {
            let err = protocol::parse_step(&e["response"]).unwrap_err();
            assert!(err.contains("The "), "{name}: {err}");
        }
    }
    let web = fixture(WEBSHOP);
    assert_eq!(
        protocol::parse_actions(&web["available_actions"]["response"]).unwrap(),
        ["click[back to search]", "click[next >]", "click[b09qqldj93]"]
    );
    let sci = protocol::parse_step(&fixture(SCIWORLD)["step_final"]["response"]).unwrap();
    assert_eq!((sci.reward, sci.score), (33.0, Some(100.0)));
    let bad = fixture(ALFWORLD)["reset_bad_world_type"]["response"].clone();
    assert!(protocol::parse_reset(&bad).unwrap_err().contains("world_type"));
}

/// A fake AgentGym server answering with one fixture file; `/create` first answers 503
/// `fail_first` times.
struct Fake {
    url: String,
    requests: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    fn start(f: Value, fail_first: usize) -> Fake {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        let creates = AtomicUsize::new(0);
        let steps = AtomicUsize::new(0);
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok(Some(mut req)) = server.recv_timeout(std::time::Duration::from_millis(50))
                else {
                    continue;
                };
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let url = req.url().to_string();
                let path = url.split('?').next().unwrap().to_string();
                log.lock()
                    .unwrap()
                    .push((url.clone(), serde_json::from_str(&body).unwrap_or(Value::Null)));
                let (code, answer) = match path.as_str() {
                    "/create" if creates.fetch_add(1, Ordering::Relaxed) < fail_first => {
                        (503, json!("busy"))
                    }
                    "/create" => (200, f["create"]["response"].clone()),
                    "/reset" => (200, f["reset"]["response"].clone()),
                    "/step" => match steps.fetch_add(1, Ordering::Relaxed) {
                        0 => (200, f["step"]["response"].clone()),
                        1 => (200, f["step_final"]["response"].clone()),
                        _ => (200, f["error"]["response"].clone()),
                    },
                    "/available_actions" => (200, f["available_actions"]["response"].clone()),
                    "/close" if f.get("close").is_some() => (200, f["close"]["response"].clone()),
                    _ => (404, json!({"detail": "Not Found"})),
                };
                let resp =
                    tiny_http::Response::from_string(answer.to_string()).with_status_code(code);
                let _ = req.respond(resp);
            }
        });
        Fake { url, requests, stop, thread: Some(thread) }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn drives_a_webshop_style_server() {
    let fake = Fake::start(fixture(WEBSHOP), 2);
    let config = RemoteConfig {
        url: fake.url.clone(),
        variant: Variant::EnvIdx,
        splits: Some(RemoteSplits {
            unseen: Some(Indices::List(vec![5, 9])),
            ..Default::default()
        }),
        max_steps: Some(15),
        timeout_secs: 5,
        ..Default::default()
    };
    let world = RemoteWorld::new(config).unwrap();
    assert_eq!((world.num_tasks(Split::Unseen), world.num_tasks(Split::Train)), (2, 0));
    let mut env = world.env().unwrap();
    assert_eq!(env.session(), 31337, "two 503s were retried");
    let first = env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
    assert!(first.starts_with("WebShop [SEP] Instruction"));
    assert_eq!(env.admissible_actions().len(), 3);
    let out = env.step("search[long clip-in hair extension]").unwrap();
    assert!(!out.done && out.observation.contains("Page 1"));
    let out = env.step("click[buy now]").unwrap();
    assert!(out.done && !out.won && (out.reward - 0.75).abs() < 1e-12, "{out:?}");
    assert!(env.step("click[back to search]").is_err(), "the episode is over");
    drop(env);
    let log = fake.requests.lock().unwrap().clone();
    let bodies: Vec<&Value> =
        log.iter().filter(|(u, _)| u == "/reset" || u == "/close").map(|(_, b)| b).collect();
    assert_eq!(bodies[0], &json!({"env_idx": 31337, "session_id": 5}));
    assert_eq!(bodies[1], &json!({"env_idx": 31337}), "the session was closed");
    assert!(log.iter().any(|(u, _)| u == "/available_actions?env_idx=31337"));
}

#[test]
fn drives_a_sciworld_style_server_and_reports_its_errors() {
    let fake = Fake::start(fixture(SCIWORLD), 0);
    let config = RemoteConfig {
        url: fake.url.clone(),
        splits: Some(RemoteSplits {
            seen: Some(Indices::Range { start: 10, count: 5 }),
            ..Default::default()
        }),
        max_steps: Some(30),
        reward_from_score: true,
        timeout_secs: 5,
        ..Default::default()
    };
    let world = RemoteWorld::new(config).unwrap();
    let mut env = world.env().unwrap();
    assert!(env.reset(TaskId::new(Split::Seen, 5), 0).is_err(), "seen has 5 tasks");
    env.reset(TaskId::new(Split::Seen, 2), 0).unwrap();
    assert_eq!(env.step("open door to kitchen").unwrap().reward, 0.0);
    let last = env.step("focus on substance in metal pot").unwrap();
    assert!(last.done && last.won && last.reward == 1.0, "score 100 is a win: {last:?}");
    env.reset(TaskId::new(Split::Seen, 2), 0).unwrap();
    let err = env.step("look around").unwrap_err().to_string();
    assert!(err.contains("The id 7 is not valid."), "{err}");
    let reset =
        fake.requests.lock().unwrap().iter().find(|(u, _)| u == "/reset").unwrap().1.clone();
    assert_eq!(reset["data_idx"], 12);
    assert_eq!(reset["id"], 0);
}

#[test]
fn bad_options_are_named() {
    let err = RemoteWorld::new(RemoteConfig { url: "localhost:80".into(), ..Default::default() })
        .err()
        .unwrap();
    assert!(err.to_string().contains("url"), "{err}");
    // No splits and no stepagent /health to read them from.
    let fake = Fake::start(fixture(ALFWORLD), 0);
    let err = RemoteWorld::new(RemoteConfig {
        url: fake.url.clone(),
        timeout_secs: 2,
        retries: 0,
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("splits"), "{err}");
    let err = stepagent_env::registry::open("remote", &json!({"url": fake.url, "retry": 3}))
        .err()
        .unwrap();
    assert!(err.to_string().contains("retry"), "{err}");
}
