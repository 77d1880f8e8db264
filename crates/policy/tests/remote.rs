//! The remote policy against a chat-completions stub served on loopback inside the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use stepagent_env::{Split, TaskId, World};
use stepagent_policy::policies::{RemoteConfig, RemotePolicy};
use stepagent_policy::runner::{RunConfig, Runner};
use stepagent_policy::toy::LineWorld;
use stepagent_policy::{ActContext, Message, Policy};

/// What the stub does with the n-th request (0-based).
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Status(u16),
    /// Waits this long before answering (longer than the client's timeout).
    Slow(Duration),
}

struct Stub {
    url: String,
    requests: Arc<AtomicUsize>,
    bodies: Arc<std::sync::Mutex<Vec<Value>>>,
}

/// Serves chat completions on 127.0.0.1 with a free port; checks every body it gets.
fn stub(script: Vec<Answer>, reply: &'static str) -> Stub {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (requests.clone(), bodies.clone());
    thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let path_ok =
                req.url() == "/v1/chat/completions" && *req.method() == tiny_http::Method::Post;
            let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let well_formed = path_ok && well_formed_chat_request(&value);
            seen.lock().unwrap().push(value);
            let answer = script.get(n).copied().unwrap_or(Answer::Ok);
            // Each answer on its own thread so a slow one does not hold up the retry.
            thread::spawn(move || {
                let resp = if !well_formed {
                    tiny_http::Response::from_string("bad request").with_status_code(400)
                } else {
                    match answer {
                        Answer::Ok => ok_response(reply),
                        Answer::Status(code) => {
                            tiny_http::Response::from_string("oops").with_status_code(code)
                        }
                        Answer::Slow(d) => {
                            thread::sleep(d);
                            ok_response(reply)
                        }
                    }
                };
                let _ = req.respond(resp);
            });
        }
    });
    Stub { url: format!("http://127.0.0.1:{port}/v1"), requests, bodies }
}

fn ok_response(reply: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let body = json!({
        "id": "cmpl-1", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": reply}}]
    });
    tiny_http::Response::from_string(body.to_string())
        .with_header("Content-Type: application/json".parse::<tiny_http::Header>().unwrap())
}

/// The shape of an OpenAI chat-completions request.
fn well_formed_chat_request(v: &Value) -> bool {
    let Some(msgs) = v.get("messages").and_then(Value::as_array) else { return false };
    v.get("model").and_then(Value::as_str).is_some_and(|m| !m.is_empty())
        && !msgs.is_empty()
        && msgs.iter().all(|m| {
            matches!(m.get("role").and_then(Value::as_str), Some("system" | "user" | "assistant"))
                && m.get("content").and_then(Value::as_str).is_some()
                && m.as_object().unwrap().len() == 2
        })
        && msgs.last().unwrap()["role"] == "user"
        && v.get("max_tokens").and_then(Value::as_u64).is_some()
        && v.get("temperature").and_then(Value::as_f64).is_some()
        && v.get("stream") == Some(&Value::Bool(false))
}

fn cfg(url: &str) -> RemoteConfig {
    RemoteConfig {
        base_url: url.into(),
        model: "tiny".into(),
        api_key_env: "STEPAGENT_TEST_NO_SUCH_KEY".into(),
        timeout_secs: 0.5,
        max_retries: 2,
        backoff_secs: 0.01,
        ..RemoteConfig::default()
    }
}

fn act(policy: &RemotePolicy) -> Result<String, stepagent_policy::PolicyError> {
    let world = LineWorld::default();
    let mut env = world.new_env().unwrap();
    let task = TaskId::new(Split::Seen, 0);
    let first = env.reset(task, 0).unwrap();
    let conv =
        vec![Message::user(world.instruction()), Message::assistant("OK"), Message::user(first)];
    policy.act(&ActContext { conversation: &conv, env: &*env, task, seed: 42 })
}

#[test]
fn sends_a_well_formed_chat_completions_call() {
    let s = stub(vec![], "Thought: go right.\nAction: move right");
    let policy = RemotePolicy::new(cfg(&s.url)).unwrap();
    assert_eq!(act(&policy).unwrap(), "Thought: go right.\nAction: move right");
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
    let body = s.bodies.lock().unwrap()[0].clone();
    assert!(well_formed_chat_request(&body), "{body}");
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["messages"][1], json!({"role": "assistant", "content": "OK"}));
    assert_eq!(body["stop"], json!(["\nObservation"]));
}

#[test]
fn retries_5xx_then_succeeds() {
    let s = stub(vec![Answer::Status(503), Answer::Status(500)], "Action: look");
    let policy = RemotePolicy::new(cfg(&s.url)).unwrap();
    assert_eq!(act(&policy).unwrap(), "Action: look");
    assert_eq!(s.requests.load(Ordering::SeqCst), 3);
}

#[test]
fn retries_a_timeout_then_succeeds() {
    let s = stub(vec![Answer::Slow(Duration::from_secs(3))], "Action: look");
    let policy = RemotePolicy::new(cfg(&s.url)).unwrap();
    assert_eq!(act(&policy).unwrap(), "Action: look");
    assert_eq!(s.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn gives_up_after_max_retries() {
    let s = stub(vec![Answer::Status(502); 10], "Action: look");
    let policy = RemotePolicy::new(cfg(&s.url)).unwrap();
    let err = act(&policy).unwrap_err().to_string();
    assert!(err.contains("HTTP 502") && err.contains("after 3 attempts"), "{err}");
    assert_eq!(s.requests.load(Ordering::SeqCst), 3);
}

#[test]
fn does_not_retry_a_client_error() {
    let s = stub(vec![Answer::Status(404)], "Action: look");
    let policy = RemotePolicy::new(cfg(&s.url)).unwrap();
    let err = act(&policy).unwrap_err().to_string();
    assert!(err.contains("HTTP 404"), "{err}");
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn drives_the_runner_end_to_end() {
    let s = stub(vec![], "Thought: right.\nAction: move right");
    let policy = RemotePolicy::new(cfg(&s.url)).unwrap();
    let world = LineWorld { tasks: 2, max_steps: 3 };
    let tasks = [TaskId::new(Split::Train, 0), TaskId::new(Split::Train, 1)];
    let eps =
        Runner::new(&world, &policy, RunConfig::default()).run(&tasks, &mut |_| Ok(())).unwrap();
    assert_eq!(eps.iter().map(|e| e.steps).sum::<usize>(), 6);
    assert_eq!(s.requests.load(Ordering::SeqCst), 6);
    assert_eq!(eps[0].policy, "remote:tiny");
}

#[test]
fn rejects_a_url_without_scheme() {
    assert!(RemotePolicy::new(cfg("localhost:8000/v1")).is_err());
}
