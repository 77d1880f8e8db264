use std::collections::HashMap;

use stepagent_env::TaskId;

use crate::react::INVALID_FORMAT;
use crate::{ActContext, Message, Policy, PolicyError, Role};

/// Replays recorded assistant turns, one recorded trajectory per task.
///
/// The step to replay is read off the conversation: the number of assistant turns after the
/// task's first observation (the last user turn that is not an "Observation: …"). The runner
/// shows the whole history unless a history window is configured; with a window that drops
/// turns the count would be wrong, so this policy refuses to act on a conversation whose
/// observations do not line up with its assistant turns.
#[derive(Debug, Clone, Default)]
pub struct ReplayPolicy {
    name: String,
    turns: HashMap<TaskId, Vec<String>>,
}

impl ReplayPolicy {
    /// A replay policy called `name` (for reports) with no recordings.
    pub fn new(name: impl Into<String>) -> Self {
        ReplayPolicy { name: name.into(), turns: HashMap::new() }
    }

    /// Records the assistant turns to replay on `task`, in order.
    pub fn insert(&mut self, task: TaskId, turns: Vec<String>) {
        self.turns.insert(task, turns);
    }

    /// Records `task` from a whole ETO-layout conversation (instruction, `OK`, first
    /// observation, then actions and observations): its assistant turns after the `OK`.
    pub fn insert_conversation(&mut self, task: TaskId, conversation: &[Message]) {
        let turns = conversation
            .iter()
            .skip(2)
            .filter(|m| m.role == Role::Assistant)
            .map(|m| m.content.clone())
            .collect();
        self.insert(task, turns);
    }

    /// How many tasks have a recording.
    pub fn len(&self) -> usize {
        self.turns.len()
    }

    /// Whether no task has a recording.
    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }
}

/// The number of agent steps already taken in `conversation`.
fn steps_taken(conversation: &[Message]) -> Option<usize> {
    let first_obs = conversation.iter().rposition(|m| {
        m.role == Role::User
            && !m.content.starts_with("Observation:")
            && !m.content.contains(INVALID_FORMAT)
    })?;
    let tail = &conversation[first_obs + 1..];
    let steps = tail.iter().filter(|m| m.role == Role::Assistant).count();
    let observations = tail.iter().filter(|m| m.role == Role::User).count();
    (steps == observations).then_some(steps)
}

impl Policy for ReplayPolicy {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        let no =
            |reason: String| PolicyError::NoAction { policy: self.name(), task: ctx.task, reason };
        let turns =
            self.turns.get(&ctx.task).ok_or_else(|| no("no recording for this task".into()))?;
        let step = steps_taken(ctx.conversation)
            .ok_or_else(|| no("cannot tell the step from the conversation (is a history window dropping turns?)".into()))?;
        turns.get(step).cloned().ok_or_else(|| {
            no(format!("the recording has {} steps; step {} asked for", turns.len(), step + 1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_steps_after_first_observation() {
        let c = vec![
            Message::user("instr"),
            Message::assistant("OK"),
            Message::user("ex first obs"),
            Message::assistant("Action: x"),
            Message::user("real first obs"),
        ];
        assert_eq!(steps_taken(&c), Some(0));
        let mut c2 = c.clone();
        c2.push(Message::assistant("Thought\nAction: y"));
        c2.push(Message::user("Observation: Nothing happens."));
        assert_eq!(steps_taken(&c2), Some(1));
        c2.push(Message::assistant("no action"));
        c2.push(Message::user(format!("Observation: {INVALID_FORMAT}")));
        assert_eq!(steps_taken(&c2), Some(2));
    }
}
