use std::collections::HashSet;
use std::fmt;

use crate::{Dataset, Location, Speaker, Turn};

/// How bad an [`Issue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The record is unusable as it stands (training would learn the wrong thing or fail).
    Error,
    /// Unusual for ETO's layout but usable.
    Warning,
}

/// One problem found by [`validate()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// How bad.
    pub severity: Severity,
    /// Where: file, record index and id, turn.
    pub at: Location,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}: {}", self.at, self.message)
    }
}

struct Check<'a> {
    issues: &'a mut Vec<Issue>,
}

impl Check<'_> {
    fn error(&mut self, at: Location, message: impl Into<String>) {
        self.issues.push(Issue { severity: Severity::Error, at, message: message.into() });
    }
    fn warn(&mut self, at: Location, message: impl Into<String>) {
        self.issues.push(Issue { severity: Severity::Warning, at, message: message.into() });
    }
}

/// Whether an agent turn carries an action: a non-empty text after `Action:`.
fn has_action(content: &str) -> bool {
    content.find("Action:").is_some_and(|i| {
        content[i + "Action:".len()..].lines().next().is_some_and(|l| !l.trim().is_empty())
    })
}

/// Checks a dataset against ETO's layout. Returns every problem found, errors first within
/// each record; an empty list means the file is clean. `file` names it in the issues.
pub fn validate(data: &Dataset, file: &str) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut c = Check { issues: &mut issues };
    let at = Location::file(file);
    let mut ids = HashSet::new();
    let mut dup = |c: &mut Check, id: &str, here: &Location| {
        if !ids.insert(id.to_string()) {
            c.error(here.clone(), format!("duplicate id `{id}`"));
        }
    };
    match data {
        Dataset::Sft { records, .. } => {
            for (i, r) in records.iter().enumerate() {
                let here = at.record(i, Some(&r.id));
                dup(&mut c, &r.id, &here);
                check_conversation(&mut c, &here, &r.conversations, 2);
            }
        }
        Dataset::Dpo { records, .. } => {
            for (i, r) in records.iter().enumerate() {
                let here = at.record(i, Some(&r.id));
                dup(&mut c, &r.id, &here);
                check_dpo_part(&mut c, &here, "prompt", &r.prompt, Speaker::User);
                check_dpo_part(&mut c, &here, "chosen", &r.chosen, Speaker::Assistant);
                check_dpo_part(&mut c, &here, "rejected", &r.rejected, Speaker::Assistant);
                if !r.chosen.is_empty() && r.chosen == r.rejected {
                    c.warn(
                        here.clone(),
                        "chosen and rejected are identical: the pair teaches nothing",
                    );
                }
            }
        }
        Dataset::Transcripts(ts) => {
            for (i, t) in ts.iter().enumerate() {
                let here = at.record(i, Some(&t.id)).line(i + 1);
                dup(&mut c, &t.id, &here);
                check_alternation(&mut c, &here, &t.conversations, None, Speaker::User);
                let after = t.conversations.get(t.prompt_turns + 1..).unwrap_or(&[]);
                let steps = after.iter().filter(|m| m.role == Speaker::Assistant).count();
                if steps != t.steps {
                    c.error(here.clone(), format!("`steps` is {} but the conversation has {steps} agent turns after the first observation", t.steps));
                }
                if t.success && t.reward <= 0.0 {
                    c.warn(here.clone(), format!("marked a success with reward {}", t.reward));
                }
                if !(0.0..=1.0).contains(&t.reward) {
                    c.warn(here.clone(), format!("reward {} is outside [0, 1]", t.reward));
                }
            }
        }
    }
    issues
}

/// Roles must alternate starting with `first` (a leading system turn is allowed). Returns
/// whether they do.
fn check_alternation(
    c: &mut Check,
    here: &Location,
    turns: &[Turn],
    list: Option<&'static str>,
    first: Speaker,
) -> bool {
    let skip = usize::from(turns.first().is_some_and(|t| t.role == Speaker::System));
    let other = if first == Speaker::User { Speaker::Assistant } else { Speaker::User };
    for (i, t) in turns.iter().enumerate().skip(skip) {
        let want = if (i - skip) % 2 == 0 { first } else { other };
        if t.role != want {
            c.error(
                here.turn(list, i),
                format!("expected {} turn, found {}", name(want), name(t.role)),
            );
            return false;
        }
    }
    true
}

fn name(s: Speaker) -> &'static str {
    match s {
        Speaker::System => "a system",
        Speaker::User => "a user (human)",
        Speaker::Assistant => "an assistant (gpt)",
    }
}

/// ETO's SFT layout: instruction, "OK", first observation, then action / observation pairs,
/// ending with an action. `first_step` is the index of the "OK" turn's successor's successor
/// minus one, i.e. the first observation's index.
fn check_conversation(c: &mut Check, here: &Location, turns: &[Turn], first_obs: usize) {
    if turns.is_empty() {
        c.error(here.clone(), "empty conversation");
        return;
    }
    let ok = check_alternation(c, here, turns, None, Speaker::User);
    if ok && turns.len() < first_obs + 2 {
        c.error(
            here.clone(),
            format!("{} turns: expected the instruction, \"OK\", the first observation and at least one action", turns.len()),
        );
        return;
    }
    if ok && turns.last().is_some_and(|t| t.role != Speaker::Assistant) {
        c.error(
            here.turn(None, turns.len() - 1),
            "the conversation ends with a user turn; ETO data ends with the agent's last action",
        );
    }
    if turns.get(1).is_some_and(|t| t.role == Speaker::Assistant && t.content.trim() != "OK") {
        c.warn(here.turn(None, 1), "turn 1 is not \"OK\" (ETO's reply to the instruction)");
    }
    for (i, t) in turns.iter().enumerate() {
        if t.content.trim().is_empty() {
            c.warn(here.turn(None, i), "empty turn");
        } else if i > first_obs && t.role == Speaker::Assistant && !has_action(&t.content) {
            c.warn(here.turn(None, i), "agent turn without an action (no text after `Action:`)");
        } else if i > first_obs && t.role == Speaker::User && !t.content.starts_with("Observation:")
        {
            c.warn(here.turn(None, i), "observation turn does not start with \"Observation:\"");
        }
    }
}

fn check_dpo_part(
    c: &mut Check,
    here: &Location,
    list: &'static str,
    turns: &[Turn],
    first: Speaker,
) {
    if turns.is_empty() {
        c.error(here.clone(), format!("`{list}` is empty"));
        return;
    }
    let expected_first = if list == "prompt" { Speaker::User } else { first };
    if check_alternation(c, here, turns, Some(list), expected_first) {
        let last = turns.len() - 1;
        if list == "prompt" && turns[last].role != Speaker::User {
            c.error(
                here.turn(Some(list), last),
                "the prompt must end with a user turn (the observation the agent answers)",
            );
        }
        if list != "prompt" && turns[last].role != Speaker::Assistant {
            c.error(here.turn(Some(list), last), format!("`{list}` must end with an agent turn"));
        }
    }
    for (i, t) in turns.iter().enumerate() {
        if list != "prompt" && t.role == Speaker::Assistant && !has_action(&t.content) {
            c.warn(
                here.turn(Some(list), i),
                "agent turn without an action (no text after `Action:`)",
            );
        }
    }
}
