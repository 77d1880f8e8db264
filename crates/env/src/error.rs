use thiserror::Error;

/// What went wrong in a world. Bad *actions* are not errors (the world answers them with an
/// observation such as "Nothing happens."); these are failures of the caller or the world.
#[derive(Debug, Error)]
pub enum EnvError {
    /// No world of that name is registered.
    #[error("unknown world `{name}`; known worlds: {known}")]
    UnknownWorld {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A split name that is not `train`, `seen` or `unseen` (or an accepted alias).
    #[error("unknown split `{0}`; expected train, seen or unseen (aliases: valid_seen, dev, valid_unseen, test)")]
    UnknownSplit(String),
    /// A task index past the end of its split.
    #[error("task {task} does not exist: the {split} split of `{world}` has {len} tasks")]
    NoSuchTask {
        /// The world.
        world: String,
        /// The split.
        split: String,
        /// The requested task, as written.
        task: String,
        /// How many tasks the split holds.
        len: usize,
    },
    /// A world's options (from the CLI or a TOML config) did not parse.
    #[error("bad options for world `{world}`: {message}")]
    BadOptions {
        /// The world.
        world: String,
        /// What was wrong, naming the key.
        message: String,
    },
    /// A scene or task specification was inconsistent.
    #[error("bad task spec: {0}")]
    BadSpec(String),
    /// `step` was called before `reset` or after the episode ended.
    #[error("{0}")]
    NotRunning(&'static str),
    /// A world backed by an external process or service failed.
    #[error("world backend failed: {0}")]
    Backend(String),
}
