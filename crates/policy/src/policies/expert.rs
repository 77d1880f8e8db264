use crate::{ActContext, Policy, PolicyError};

/// The world's own expert ([`stepagent_env::Environment::expert_step`]), written as a ReAct
/// turn `Thought: …\nAction: …`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExpertPolicy;

impl Policy for ExpertPolicy {
    fn name(&self) -> String {
        "expert".into()
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        ctx.env.expert_step().map(|s| s.to_turn()).ok_or_else(|| PolicyError::NoAction {
            policy: self.name(),
            task: ctx.task,
            reason: format!("the world has no expert step after {} steps", ctx.env.steps()),
        })
    }
}
