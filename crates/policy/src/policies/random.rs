use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::react::react_turn;
use crate::{ActContext, Policy, PolicyError};

/// Picks one of the world's admissible actions uniformly at random, seeded by
/// [`ActContext::seed`] so a run is reproducible whatever the thread count.
///
/// The baseline that shows what success a world gives away for free.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomPolicy;

impl Policy for RandomPolicy {
    fn name(&self) -> String {
        "random".into()
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        let mut actions = ctx.env.admissible_actions();
        // Worlds compute the list on demand; sort so the pick does not depend on its order.
        actions.sort();
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        let action = actions.choose(&mut rng).ok_or_else(|| PolicyError::NoAction {
            policy: self.name(),
            task: ctx.task,
            reason: "the world lists no admissible actions".into(),
        })?;
        Ok(react_turn("I will try an action at random.", action))
    }
}
