//! The policies that need no model: the world's expert, random, replay, and a remote
//! chat-completions endpoint.

mod expert;
mod random;
mod remote;
mod replay;

pub use expert::ExpertPolicy;
pub use random::RandomPolicy;
pub use remote::{RemoteConfig, RemotePolicy};
pub use replay::ReplayPolicy;
