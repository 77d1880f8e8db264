//! Episodes into the on-disk formats of `stepagent-data`.

use serde_json::{Map, Value};
use stepagent_data::{SftRecord, Speaker, Transcript, Turn};
use stepagent_policy::runner::{Episode, EpisodeEnd};
use stepagent_policy::{Message, Role};

/// A conversation turn as the data crate writes it.
pub fn turn_of(m: &Message) -> Turn {
    let role = match m.role {
        Role::System => Speaker::System,
        Role::User => Speaker::User,
        Role::Assistant => Speaker::Assistant,
    };
    Turn { role, content: m.content.clone() }
}

/// A conversation turn as policies read it.
pub fn message_of(t: &Turn) -> Message {
    let role = match t.role {
        Speaker::System => Role::System,
        Speaker::User => Role::User,
        Speaker::Assistant => Role::Assistant,
    };
    Message { role, content: t.content.clone() }
}

/// The JSONL transcript of an episode.
pub fn transcript_of(e: &Episode) -> Transcript {
    Transcript {
        id: format!("{}/{}", e.world, e.task),
        world: e.world.clone(),
        task: e.task.to_string(),
        split: e.task.split.to_string(),
        task_type: e.task_type.clone(),
        policy: e.policy.clone(),
        seed: e.seed,
        reward: e.reward,
        success: e.won,
        steps: e.steps,
        invalid_actions: e.invalid_actions,
        format_errors: e.format_errors,
        prompt_turns: e.prompt_turns,
        end: match e.end {
            EpisodeEnd::Done => "done",
            EpisodeEnd::MaxSteps => "max_steps",
        }
        .into(),
        conversations: e.conversation.iter().map(turn_of).collect(),
    }
}

/// An ETO-format SFT record of an episode: the conversation up to the agent's last action
/// (ETO's data ends there; the final observation is dropped), with `world`, `task`,
/// `task_type`, `seed` and `reward` as extra keys. The id is `world_split_index`, like ETO's
/// `alfworld_12`.
pub fn sft_record_of(e: &Episode) -> SftRecord {
    let mut conversation = &e.conversation[..];
    if conversation.last().is_some_and(|m| m.role == Role::User)
        && conversation.len() > e.prompt_turns + 1
    {
        conversation = &conversation[..conversation.len() - 1];
    }
    let mut extra = Map::new();
    extra.insert("world".into(), Value::String(e.world.clone()));
    extra.insert("task".into(), Value::String(e.task.to_string()));
    extra.insert("task_type".into(), Value::String(e.task_type.clone()));
    extra.insert("seed".into(), Value::from(e.seed));
    extra.insert("reward".into(), Value::from(e.reward));
    SftRecord {
        id: format!("{}_{}_{}", e.world, e.task.split, e.task.index),
        conversations: conversation.iter().map(turn_of).collect(),
        extra,
    }
}
