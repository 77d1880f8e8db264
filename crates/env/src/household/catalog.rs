//! ALFWorld's scene facts, converted once from the `alfworld` 0.4.2 wheel (MIT) by
//! `data/household/convert.py` and embedded here.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::Deserialize;

const FLOORPLANS_JSON: &str = include_str!("../../data/household/floorplans.json");

/// One ALFRED floor plan: which receptacles (and how many of each) and which object types it
/// holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FloorPlan {
    /// ALFRED's number (`FloorPlan<id>`).
    pub id: u32,
    /// kitchen, livingroom, bedroom or bathroom.
    pub room: String,
    /// Receptacle types (lowercase) and how many instances the room has.
    pub receptacles: Vec<(String, u32)>,
    /// Object types that may be placed in the room.
    pub objects: Vec<String>,
    /// Lamp types present (desklamp, floorlamp).
    pub lamps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[allow(dead_code)]
    source: String,
    unseen_floorplans: Vec<u32>,
    openable: Vec<String>,
    cleanable: Vec<String>,
    heatable: Vec<String>,
    coolable: Vec<String>,
    toggleable: Vec<String>,
    can_contain: HashMap<String, Vec<String>>,
    floorplans: Vec<FloorPlan>,
}

/// The facts, indexed for lookups.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub unseen_floorplans: Vec<u32>,
    pub floorplans: Vec<FloorPlan>,
    openable: HashSet<String>,
    cleanable: HashSet<String>,
    heatable: HashSet<String>,
    coolable: HashSet<String>,
    toggleable: HashSet<String>,
    can_contain: HashMap<String, HashSet<String>>,
    /// Every object type some receptacle accepts: types outside it (a user's own) go anywhere.
    known_objects: HashSet<String>,
}

impl Catalog {
    fn parse(text: &str) -> Result<Catalog, serde_json::Error> {
        let raw: Raw = serde_json::from_str(text)?;
        let set = |v: Vec<String>| v.into_iter().collect::<HashSet<_>>();
        let can_contain: HashMap<String, HashSet<String>> =
            raw.can_contain.into_iter().map(|(k, v)| (k, set(v))).collect();
        let known_objects = can_contain.values().flatten().cloned().collect();
        Ok(Catalog {
            unseen_floorplans: raw.unseen_floorplans,
            floorplans: raw.floorplans,
            openable: set(raw.openable),
            cleanable: set(raw.cleanable),
            heatable: set(raw.heatable),
            coolable: set(raw.coolable),
            toggleable: set(raw.toggleable),
            can_contain,
            known_objects,
        })
    }

    /// Whether receptacles of this type open and close (fridge, cabinet, drawer …).
    pub fn openable(&self, recep_type: &str) -> bool {
        self.openable.contains(recep_type)
    }

    /// Whether `clean X with sinkbasin` works on this object type.
    pub fn cleanable(&self, obj_type: &str) -> bool {
        self.cleanable.contains(obj_type)
    }

    /// Whether `heat X with microwave` works on this object type.
    pub fn heatable(&self, obj_type: &str) -> bool {
        self.heatable.contains(obj_type)
    }

    /// Whether `cool X with fridge` works on this object type.
    pub fn coolable(&self, obj_type: &str) -> bool {
        self.coolable.contains(obj_type)
    }

    /// Lamps: `use` turns them on; they cannot be picked up.
    pub fn toggleable(&self, obj_type: &str) -> bool {
        self.toggleable.contains(obj_type)
    }

    /// Whether an object of `obj_type` may be put in/on a receptacle of `recep_type`. Types
    /// the catalog does not know (a user's own) are accepted everywhere.
    pub fn can_contain(&self, recep_type: &str, obj_type: &str) -> bool {
        match self.can_contain.get(recep_type) {
            Some(objs) => objs.contains(obj_type) || !self.known_objects.contains(obj_type),
            None => true,
        }
    }

    /// Whether the catalog knows what a receptacle type may hold (for generated scenes, where
    /// only known pairs are used).
    pub fn accepts_known(&self, recep_type: &str, obj_type: &str) -> bool {
        self.can_contain.get(recep_type).is_some_and(|objs| objs.contains(obj_type))
    }
}

/// The embedded catalog, parsed on first use.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    // The file is part of the crate and a unit test parses it, so a failure here is a build
    // defect, not bad input.
    CATALOG
        .get_or_init(|| Catalog::parse(FLOORPLANS_JSON).expect("embedded floorplans.json parses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses_and_holds_all_rooms() {
        let c = Catalog::parse(FLOORPLANS_JSON).unwrap();
        assert_eq!(c.floorplans.len(), 120);
        assert_eq!(c.unseen_floorplans, vec![10, 219, 308, 424]);
        assert!(c.openable("fridge") && !c.openable("countertop"));
        assert!(c.can_contain("microwave", "potato"));
        assert!(!c.can_contain("toiletpaperhanger", "potato"));
        assert!(c.can_contain("toiletpaperhanger", "myowngadget"));
        assert!(c.heatable("egg") && !c.heatable("pot") && c.coolable("pot"));
    }
}
