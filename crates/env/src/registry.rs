//! Worlds by name, for the CLI and TOML configs.
//!
//! Each world takes its options as a JSON value (a TOML table converts to one) and parses them
//! into its own config struct with `deny_unknown_fields`, so a misspelt key is named.

use std::sync::Arc;

use crate::world::WorldRef;
use crate::EnvError;

/// Options for a world, as written in a config file or on the command line.
pub type WorldOptions = serde_json::Value;

/// A registry entry.
pub struct WorldEntry {
    /// The name worlds are chosen by.
    pub name: &'static str,
    /// One line for `stepagent env list`.
    pub summary: &'static str,
    /// Builds the world from its options (`null` means all defaults).
    pub open: fn(&WorldOptions) -> Result<WorldRef, EnvError>,
}

/// Every registered world.
pub fn entries() -> &'static [WorldEntry] {
    ENTRIES
}

const ENTRIES: &[WorldEntry] = &[
    WorldEntry {
        name: crate::household::NAME,
        summary:
            "ALFWorld-faithful household tasks (six task types, ALFRED floor plans) with an expert",
        open: crate::household::open,
    },
    WorldEntry {
        name: crate::shop::NAME,
        summary: "WebShop-faithful web shopping: BM25 search, product pages, WebShop's reward",
        open: crate::shop::open,
    },
    WorldEntry {
        name: crate::qa::NAME,
        summary:
            "HotpotQA multi-hop QA through ReAct's search/lookup/finish over a local encyclopedia",
        open: crate::qa::open,
    },
    WorldEntry {
        name: crate::sciworld::NAME,
        summary:
            "ScienceWorld 1.2.3, the real simulator (Java), ETO's tasks, splits and step budgets",
        open: crate::sciworld::open,
    },
    WorldEntry {
        name: crate::remote::NAME,
        summary:
            "A world on an AgentGym-protocol HTTP server (AgentGym's, or `stepagent env serve`)",
        open: crate::remote::open,
    },
];

/// Opens the world called `name` with `options`.
pub fn open(name: &str, options: &WorldOptions) -> Result<WorldRef, EnvError> {
    let entry =
        entries().iter().find(|e| e.name == name).ok_or_else(|| EnvError::UnknownWorld {
            name: name.to_string(),
            known: entries().iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        })?;
    (entry.open)(options)
}

/// Parses a world's options into its config type, naming the world on error.
pub fn parse_options<T: serde::de::DeserializeOwned + Default>(
    world: &str,
    options: &WorldOptions,
) -> Result<T, EnvError> {
    if options.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(options.clone())
        .map_err(|e| EnvError::BadOptions { world: world.to_string(), message: e.to_string() })
}

/// Wraps a concrete world as a shared handle.
pub fn shared<W: crate::World + 'static>(world: W) -> WorldRef {
    Arc::new(world)
}
