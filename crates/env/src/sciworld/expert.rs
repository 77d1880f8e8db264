//! Thoughts for the simulator's gold actions, in the voice of ETO's ScienceWorld
//! trajectories: one or two plain sentences saying why the next action helps.

/// The thought written before `action`, step `index` of a gold path for the task `goal`
/// (the task description without its "Task Description:" header).
pub fn thought(goal: &str, index: usize, action: &str) -> String {
    let body = reason(action.trim());
    if index == 0 {
        let goal = goal.trim().trim_start_matches("Your task is to ").trim_end_matches('.');
        let goal = goal.split(". ").next().unwrap_or(goal);
        format!("My task is to {goal}. {body}")
    } else {
        body
    }
}

fn reason(action: &str) -> String {
    let (verb, rest) = split_verb(action);
    match verb {
        "look around" => "I should look around to see what is in this room.".to_string(),
        "teleport to" | "go to" => {
            format!("What I need next is in the {rest}, so I should go there.")
        }
        "open door to" => {
            format!("The door to the {rest} is closed; I need to open it to get through.")
        }
        "open" => format!("I should open the {rest} to get at what is inside."),
        "close" => format!("I am done with the {rest}, so I should close it."),
        "pick up" => format!("I will need the {rest}, so I should pick it up."),
        "focus on" => format!("The {rest} is what the task is about, so I should focus on it."),
        "move" => match rest.split_once(" to ") {
            Some((a, b)) => format!("I should put the {a} in the {b}."),
            None => format!("I should move the {rest}."),
        },
        "pour" => match rest.split_once(" into ") {
            Some((a, b)) => format!("I should pour the {a} into the {b}."),
            None => format!("I should pour the {rest}."),
        },
        "activate" => format!("I need the {rest} running, so I should turn it on."),
        "deactivate" => format!("The {rest} has done its job; I should turn it off."),
        "connect" => match rest.split_once(" to ") {
            Some((a, b)) => format!("To build the circuit I should connect the {a} to the {b}."),
            None => format!("I should connect the {rest}."),
        },
        "disconnect" => format!("I should disconnect the {rest}."),
        "examine" => format!("I should examine the {rest} closely."),
        "look at" => format!("I should look at the {rest} to see its state."),
        "use" => match rest.split_once(" on ") {
            Some((a, b)) => format!("I should use the {a} on the {b} to find out what I need."),
            None => format!("I should use the {rest}."),
        },
        "mix" => format!("Everything is in the {rest} now; I should mix it."),
        "read" => format!("The {rest} may tell me something useful, so I should read it."),
        "wait" | "wait1" => "The process takes time, so I should wait.".to_string(),
        "inventory" => "I should check what I am carrying.".to_string(),
        _ if action.chars().all(|c| c.is_ascii_digit()) && !action.is_empty() => {
            "Several things match what I said; I should choose the one I meant.".to_string()
        }
        _ => format!("Next I should {action}."),
    }
}

/// Splits an action into its verb phrase and the rest, longest verb first.
fn split_verb(action: &str) -> (&str, &str) {
    const VERBS: &[&str] = &[
        "look around",
        "teleport to",
        "go to",
        "open door to",
        "pick up",
        "focus on",
        "look at",
        "deactivate",
        "disconnect",
        "activate",
        "connect",
        "examine",
        "inventory",
        "wait1",
        "wait",
        "open",
        "close",
        "move",
        "pour",
        "use",
        "mix",
        "read",
    ];
    for v in VERBS {
        if action == *v {
            return (v, "");
        }
        if let Some(rest) = action.strip_prefix(v).and_then(|r| r.strip_prefix(' ')) {
            return (v, rest.trim());
        }
    }
    ("", action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thoughts_follow_the_action() {
        assert_eq!(
            reason("teleport to kitchen"),
            "What I need next is in the kitchen, so I should go there."
        );
        assert_eq!(reason("move metal pot to stove"), "I should put the metal pot in the stove.");
        assert_eq!(reason("activate stove"), "I need the stove running, so I should turn it on.");
        assert_eq!(reason("deactivate sink"), "The sink has done its job; I should turn it off.");
        assert_eq!(reason("wait1"), "The process takes time, so I should wait.");
        assert_eq!(
            reason("0"),
            "Several things match what I said; I should choose the one I meant."
        );
        assert_eq!(reason("flush toilet"), "Next I should flush toilet.");
    }

    #[test]
    fn first_thought_states_the_goal() {
        let goal = "Your task is to boil water. For compounds without a boiling point, combusting the substance is also acceptable.";
        let t = thought(goal, 0, "teleport to kitchen");
        assert_eq!(
            t,
            "My task is to boil water. What I need next is in the kitchen, so I should go there."
        );
        assert!(!thought(goal, 1, "look around").contains("My task"));
    }
}
