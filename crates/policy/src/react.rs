//! ReAct prompting as ETO does it, action parsing, and history windows.
//!
//! A conversation is laid out as in ETO's released data:
//!
//! | turn | role | content |
//! |---|---|---|
//! | 0 | user | the world's instruction prompt |
//! | 1 | assistant | `OK` |
//! | 2 … | user / assistant | in-context examples, if any, as real alternating turns |
//! | next | user | the task's first observation (the scene and "Your task is to: …") |
//! | then | assistant / user | `Thought: …\nAction: …` / `Observation: …`, alternating |
//!
//! # Which "Action:" counts
//!
//! The action is the text after the **first** `Action:` in the reply, up to the end of that
//! line. The first, because a model that keeps writing after its action usually goes on to
//! imagine the next observation and a further action: the world must act on what the agent
//! committed to, not on its daydream. Only that line, because ALFWorld-style actions are one
//! line and whatever follows is such a continuation. End-of-turn tokens (`<|im_end|>`, `</s>` …)
//! and surrounding whitespace are removed. A reply with no `Action:`, or with nothing after it,
//! is a format error: the agent is told [`INVALID_FORMAT`] and the turn still counts as a step.

use serde::{Deserialize, Serialize};

use crate::{Message, Role};

/// The answer to a reply with no action, given as the next observation (after the
/// "Observation: " prefix). Wording follows ETO's environments.
pub const INVALID_FORMAT: &str =
    "Invalid format. The input must contain 'Action: ' followed by your next action.";

/// The marker an action follows.
pub const ACTION_MARKER: &str = "Action:";

/// End-of-turn tokens of the common chat templates, stripped from a reply before parsing
/// (a model or server that leaves them in the text should not lose its action to them).
pub const END_OF_TURN_TOKENS: &[&str] =
    &["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<end_of_turn>", "</s>", "<eos>"];

/// The reply to the instruction turn, as in ETO's data.
pub const ACK: &str = "OK";

/// Where a generated agent turn is cut, besides the model's end-of-turn token: the start of an
/// observation, which small models often go on to invent.
pub const TURN_STOP: &str = "\nObservation:";

/// The action in a ReAct reply, or `None` if the reply has no (non-empty) action.
///
/// See the module docs for the rule.
pub fn parse_action(reply: &str) -> Option<String> {
    let start = reply.find(ACTION_MARKER)? + ACTION_MARKER.len();
    let rest = &reply[start..];
    let line = rest.split(['\n', '\r']).next().unwrap_or("");
    let action = strip_end_of_turn(line).trim();
    if action.is_empty() {
        None
    } else {
        Some(action.to_string())
    }
}

/// Cuts the reply at the first end-of-turn token, if any.
fn strip_end_of_turn(text: &str) -> &str {
    let cut = END_OF_TURN_TOKENS.iter().filter_map(|t| text.find(t)).min();
    match cut {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The thought in a ReAct reply (the text between `Thought:` and `Action:`), if any.
pub fn parse_thought(reply: &str) -> Option<String> {
    let start = reply.find("Thought:")? + "Thought:".len();
    let end = reply[start..].find(ACTION_MARKER).map(|i| start + i).unwrap_or(reply.len());
    let thought = strip_end_of_turn(&reply[start..end]).trim();
    (!thought.is_empty()).then(|| thought.to_string())
}

/// A reply with its text cleaned for the transcript: end-of-turn tokens and whatever a model
/// wrote after them are dropped, as is surrounding whitespace.
pub fn clean_reply(reply: &str) -> String {
    strip_end_of_turn(reply).trim().to_string()
}

/// The user turn that carries an observation after the first one.
pub fn observation_turn(observation: &str) -> Message {
    Message::user(format!("Observation: {observation}"))
}

/// A ReAct assistant turn.
pub fn react_turn(thought: &str, action: &str) -> String {
    format!("Thought: {thought}\nAction: {action}")
}

/// An in-context example: a solved episode from its first observation to its last action,
/// shown to the agent as real alternating turns between the instruction and the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    turns: Vec<Message>,
}

/// Why an in-context example was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("in-context example, turn {turn}: {message}")]
pub struct ExampleError {
    /// The turn index within the example.
    pub turn: usize,
    /// What was wrong.
    pub message: String,
}

impl Example {
    /// An example from its turns: user (first observation), assistant, user, …, assistant.
    pub fn new(turns: Vec<Message>) -> Result<Self, ExampleError> {
        if turns.len() < 2 {
            return Err(ExampleError {
                turn: turns.len(),
                message: "an example needs at least an observation and an action".into(),
            });
        }
        for (i, t) in turns.iter().enumerate() {
            let want = if i % 2 == 0 { Role::User } else { Role::Assistant };
            if t.role != want {
                return Err(ExampleError {
                    turn: i,
                    message: format!("expected a {want:?} turn, found {:?}", t.role),
                });
            }
        }
        if turns.last().is_some_and(|t| t.role != Role::Assistant) {
            return Err(ExampleError {
                turn: turns.len() - 1,
                message: "an example must end with an assistant turn".into(),
            });
        }
        Ok(Example { turns })
    }

    /// An example from a whole ETO conversation (instruction, "OK", then the episode): the
    /// first two turns are dropped.
    pub fn from_eto_conversation(conversation: &[Message]) -> Result<Self, ExampleError> {
        if conversation.len() < 4 {
            return Err(ExampleError {
                turn: conversation.len(),
                message: "an ETO conversation needs the instruction, OK, and at least one step"
                    .into(),
            });
        }
        Example::new(conversation[2..].to_vec())
    }

    /// The turns.
    pub fn turns(&self) -> &[Message] {
        &self.turns
    }
}

/// The opening of an episode's conversation: instruction, `OK`, the examples, and the first
/// observation. Returns the conversation and the number of turns before the first
/// observation (the prompt head a history window always keeps).
pub fn opening(
    instruction: &str,
    examples: &[Example],
    first_observation: &str,
) -> (Vec<Message>, usize) {
    let mut conv = vec![Message::user(instruction), Message::assistant(ACK)];
    for e in examples {
        conv.extend(e.turns.iter().cloned());
    }
    let head = conv.len();
    conv.push(Message::user(first_observation));
    (conv, head)
}

/// How much history the agent sees. Both limits are optional; with neither the whole
/// conversation is shown.
///
/// What is always kept: the prompt head (instruction, `OK`, examples) and the first
/// observation (it states the task), then the most recent turns, starting with an assistant
/// turn so roles keep alternating. The latest observation is never dropped, even when the
/// kept turns alone exceed `max_chars`: the budget is a target, and a policy that must fit a
/// hard token limit truncates further itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep at most this many turns after the first observation (default: all).
    pub keep_last_turns: Option<usize>,
    /// Drop the oldest turns after the first observation until the conversation has at most
    /// this many characters (default: no limit). Characters stand in for tokens until a
    /// tokenizer is at hand; `stepagent-lm` can apply [`window`] with its own measure.
    pub max_chars: Option<usize>,
}

impl HistoryConfig {
    /// Whether this window ever drops anything.
    pub fn is_unlimited(&self) -> bool {
        self.keep_last_turns.is_none() && self.max_chars.is_none()
    }
}

/// The turns the agent sees: `conversation` cut by `cfg`, where `head` turns come before the
/// first observation. `measure` sizes one turn (characters here; tokens in an LM policy).
///
/// Returns indices into `conversation`, so callers can build a view without copying when
/// nothing is cut. Never fails: out-of-range `head` values are clamped.
pub fn window(
    conversation: &[Message],
    head: usize,
    cfg: &HistoryConfig,
    measure: &dyn Fn(&Message) -> usize,
) -> Vec<usize> {
    let n = conversation.len();
    // The head plus the first observation.
    let fixed = (head + 1).min(n);
    let mut start = fixed;
    if let Some(k) = cfg.keep_last_turns {
        start = start.max(n.saturating_sub(k));
    }
    // The latest turn is always shown.
    if start >= n && n > fixed {
        start = n - 1;
    }
    if let Some(max) = cfg.max_chars {
        let fixed_size: usize = conversation[..fixed].iter().map(measure).sum();
        let mut tail_size: usize = conversation[start..].iter().map(measure).sum();
        // Keep the latest turn whatever it costs.
        while start + 1 < n && fixed_size + tail_size > max {
            tail_size -= measure(&conversation[start]);
            start += 1;
        }
    }
    // The tail must open with an assistant turn to follow the first observation (a user turn).
    while start < n && start > fixed && conversation[start].role != Role::Assistant {
        start -= 1;
    }
    (0..fixed).chain(start..n).collect()
}

/// The size of a turn in characters, the default measure for [`window`].
pub fn chars(m: &Message) -> usize {
    m.content.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_plain() {
        assert_eq!(
            parse_action("Thought: look for it.\nAction: go to desk 1").as_deref(),
            Some("go to desk 1")
        );
    }

    #[test]
    fn action_missing_is_none() {
        assert_eq!(parse_action("Thought: I should go to the desk."), None);
        assert_eq!(parse_action(""), None);
        assert_eq!(parse_action("Thought: hmm\naction go to desk 1"), None);
    }

    #[test]
    fn action_empty_is_none() {
        assert_eq!(parse_action("Thought: x\nAction:   "), None);
        assert_eq!(parse_action("Thought: x\nAction:<|im_end|>"), None);
        assert_eq!(parse_action("Thought: x\nAction:\ngo to desk 1"), None);
    }

    #[test]
    fn action_several_takes_first_line_of_first() {
        let reply =
            "Thought: a\nAction: go to desk 1\nObservation: On the desk 1, you see a pen 1.\n\
                     Thought: b\nAction: take pen 1 from desk 1";
        assert_eq!(parse_action(reply).as_deref(), Some("go to desk 1"));
    }

    #[test]
    fn action_trailing_whitespace_and_crlf() {
        assert_eq!(parse_action("Action: open drawer 2   \t").as_deref(), Some("open drawer 2"));
        assert_eq!(
            parse_action("Thought: x\r\nAction: open drawer 2\r\n").as_deref(),
            Some("open drawer 2")
        );
        assert_eq!(parse_action("Action:open drawer 2").as_deref(), Some("open drawer 2"));
    }

    #[test]
    fn action_end_of_turn_tokens() {
        assert_eq!(parse_action("Thought: x\nAction: look<|im_end|>").as_deref(), Some("look"));
        assert_eq!(parse_action("Action: look </s>").as_deref(), Some("look"));
        assert_eq!(
            parse_action("Action: put pen 1 in/on desk 1<|eot_id|>\n<|im_start|>user").as_deref(),
            Some("put pen 1 in/on desk 1")
        );
        assert_eq!(clean_reply("Thought: x\nAction: look<|im_end|>\n"), "Thought: x\nAction: look");
    }

    #[test]
    fn thought_parsed() {
        assert_eq!(
            parse_thought("Thought: find a pen.\nAction: look").as_deref(),
            Some("find a pen.")
        );
        assert_eq!(parse_thought("Action: look"), None);
    }

    #[test]
    fn react_round_trip() {
        let t = react_turn("it is on the desk", "take pen 1 from desk 1");
        assert_eq!(parse_action(&t).as_deref(), Some("take pen 1 from desk 1"));
        assert_eq!(parse_thought(&t).as_deref(), Some("it is on the desk"));
    }

    fn conv(n_steps: usize) -> (Vec<Message>, usize) {
        let ex = Example::new(vec![
            Message::user("ex obs"),
            Message::assistant("Thought: e\nAction: look"),
        ])
        .unwrap();
        let (mut c, head) = opening("instruction", &[ex], "first obs");
        for i in 0..n_steps {
            c.push(Message::assistant(format!("Thought: t{i}\nAction: a{i}")));
            c.push(observation_turn(&format!("o{i}")));
        }
        (c, head)
    }

    #[test]
    fn opening_layout() {
        let (c, head) = conv(0);
        assert_eq!(head, 4);
        assert_eq!(c[0].content, "instruction");
        assert_eq!(c[1], Message::assistant("OK"));
        assert_eq!(c[2].content, "ex obs");
        assert_eq!(c[4].content, "first obs");
    }

    #[test]
    fn window_unlimited_keeps_all() {
        let (c, head) = conv(5);
        let w = window(&c, head, &HistoryConfig::default(), &chars);
        assert_eq!(w, (0..c.len()).collect::<Vec<_>>());
    }

    #[test]
    fn window_keeps_head_and_last_k() {
        let (c, head) = conv(5);
        let cfg = HistoryConfig { keep_last_turns: Some(4), max_chars: None };
        let w = window(&c, head, &cfg, &chars);
        let kept: Vec<&str> = w.iter().map(|&i| c[i].content.as_str()).collect();
        assert_eq!(
            &kept[..5],
            &["instruction", "OK", "ex obs", "Thought: e\nAction: look", "first obs"]
        );
        assert_eq!(
            &kept[5..],
            &[
                "Thought: t3\nAction: a3",
                "Observation: o3",
                "Thought: t4\nAction: a4",
                "Observation: o4"
            ]
        );
    }

    #[test]
    fn window_odd_k_still_alternates() {
        let (c, head) = conv(5);
        let cfg = HistoryConfig { keep_last_turns: Some(3), max_chars: None };
        let w = window(&c, head, &cfg, &chars);
        assert_eq!(c[w[5]].role, Role::Assistant);
    }

    #[test]
    fn window_char_budget_never_drops_latest() {
        let (c, head) = conv(5);
        let cfg = HistoryConfig { keep_last_turns: None, max_chars: Some(1) };
        let w = window(&c, head, &cfg, &chars);
        assert_eq!(*w.last().unwrap(), c.len() - 1);
        assert!(w.len() > head);
        for pair in w[head..].windows(2) {
            assert_ne!(c[pair[0]].role, c[pair[1]].role, "roles must alternate");
        }
    }

    #[test]
    fn example_validation() {
        assert!(Example::new(vec![Message::assistant("x"), Message::user("y")]).is_err());
        assert!(Example::new(vec![Message::user("x")]).is_err());
        assert!(Example::new(vec![
            Message::user("x"),
            Message::assistant("y"),
            Message::user("z")
        ])
        .is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = parse_action(&s);
            let _ = parse_thought(&s);
        }

        #[test]
        fn window_alternates_and_keeps_latest(steps in 0usize..12, k in proptest::option::of(0usize..10), max in proptest::option::of(0usize..400)) {
            let (c, head) = conv(steps);
            let cfg = HistoryConfig { keep_last_turns: k, max_chars: max };
            let w = window(&c, head, &cfg, &chars);
            proptest::prop_assert_eq!(*w.last().unwrap(), c.len() - 1);
            proptest::prop_assert_eq!(&w[..=head], &(0..=head).collect::<Vec<_>>()[..]);
            for pair in w.windows(2) {
                proptest::prop_assert!(pair[0] < pair[1]);
                proptest::prop_assert_ne!(c[pair[0]].role, c[pair[1]].role);
            }
        }
    }
}
