//! The household state and its rules: ALFWorld's command grammar, preconditions and exact
//! observation texts (the TextWorld engine's, with the "You arrive at loc N." prefix dropped
//! as ETO's trajectories drop it).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Write;

use super::catalog::catalog;
use super::spec::{split_name, GoalSpec, SceneSpec, TaskType};
use crate::EnvError;

/// The answer to anything unparseable or impossible.
pub(crate) const NOTHING_HAPPENS: &str = "Nothing happens.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ent {
    Recep(usize),
    Obj(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct Recep {
    pub name: String,
    pub kind: String,
    pub num: u32,
    pub openable: bool,
    pub open: bool,
    /// Object indices, kept in ALFWorld's listing order (type ascending, number descending).
    pub contents: Vec<usize>,
    /// The agent has seen what is inside (for the expert's search).
    pub inspected: bool,
    /// The agent opened it and has not closed it since (for the expert's tidying).
    pub opened_by_agent: bool,
}

impl Recep {
    /// Objects inside can be seen, taken and put: open, or not a container at all.
    pub fn accessible(&self) -> bool {
        !self.openable || self.open
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub name: String,
    pub kind: String,
    pub num: u32,
    /// The receptacle it is in, or `None` while the agent holds it.
    pub loc: Option<usize>,
    pub clean: bool,
    pub hot: bool,
    pub cool: bool,
    /// A lamp that has been used (ALFWorld's `isToggled`, which stays set).
    pub toggled: bool,
}

/// The goal with its types resolved.
#[derive(Debug, Clone)]
pub(crate) struct Goal {
    pub task_type: TaskType,
    pub object: String,
    /// Receptacle type, or lamp type for look tasks.
    pub target: String,
    pub text: String,
}

/// One episode's world state.
#[derive(Debug, Clone)]
pub(crate) struct Scene {
    pub receps: Vec<Recep>,
    pub objects: Vec<Obj>,
    names: HashMap<String, Ent>,
    pub at: Option<usize>,
    pub holding: Option<usize>,
    pub goal: Goal,
}

fn list_into(out: &mut String, names: impl ExactSizeIterator<Item = impl AsRef<str>>) {
    let n = names.len();
    if n == 0 {
        out.push_str("nothing");
        return;
    }
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == n { ", and " } else { ", " });
        }
        out.push_str("a ");
        out.push_str(name.as_ref());
    }
}

/// Lowercases and collapses whitespace, as players type commands loosely.
fn normalise(action: &str) -> String {
    let mut out = String::with_capacity(action.len());
    for word in action.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            out.extend(c.to_lowercase());
        }
    }
    out
}

impl Scene {
    /// Builds the state of a spec the caller has validated (`SceneSpec::validate`): specs
    /// are checked once when a world takes them, not at every reset.
    pub fn from_spec(spec: &SceneSpec) -> Result<Scene, EnvError> {
        let cat = catalog();
        let mut receps = Vec::with_capacity(spec.receptacles.len());
        let mut objects = Vec::new();
        for (ri, r) in spec.receptacles.iter().enumerate() {
            let (kind, num) = split_name(&r.name).map_err(EnvError::BadSpec)?;
            let openable = r.openable.unwrap_or_else(|| cat.openable(&kind));
            let mut contents = Vec::with_capacity(r.contents.len());
            for o in &r.contents {
                let (okind, onum) = split_name(o).map_err(EnvError::BadSpec)?;
                let state = spec
                    .states
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(o))
                    .map(|(_, s)| *s)
                    .unwrap_or_default();
                contents.push(objects.len());
                objects.push(Obj {
                    name: o.trim().to_string(),
                    kind: okind,
                    num: onum,
                    loc: Some(ri),
                    clean: state.clean,
                    hot: state.hot,
                    cool: state.cool,
                    toggled: false,
                });
            }
            receps.push(Recep {
                name: r.name.trim().to_string(),
                kind,
                num,
                openable,
                open: openable && r.open,
                contents,
                inspected: false,
                opened_by_agent: false,
            });
        }
        // ALFWorld lists receptacles and objects by type, then by number from high to low.
        let mut order: Vec<usize> = (0..receps.len()).collect();
        order.sort_by(|&a, &b| {
            (&receps[a].kind, Reverse(receps[a].num))
                .cmp(&(&receps[b].kind, Reverse(receps[b].num)))
        });
        let mut sorted: Vec<Recep> = order.iter().map(|&i| receps[i].clone()).collect();
        for (new, r) in sorted.iter_mut().enumerate() {
            for &o in &r.contents {
                objects[o].loc = Some(new);
            }
        }
        let mut scene = Scene {
            receps: std::mem::take(&mut sorted),
            objects,
            names: HashMap::new(),
            at: None,
            holding: None,
            goal: resolve_goal(&spec.goal),
        };
        for i in 0..scene.receps.len() {
            scene.sort_contents(i);
            scene.names.insert(scene.receps[i].name.to_lowercase(), Ent::Recep(i));
        }
        for (i, o) in scene.objects.iter().enumerate() {
            scene.names.insert(o.name.to_lowercase(), Ent::Obj(i));
        }
        Ok(scene)
    }

    fn sort_contents(&mut self, r: usize) {
        let objects = &self.objects;
        self.receps[r].contents.sort_by(|&a, &b| {
            (&objects[a].kind, Reverse(objects[a].num))
                .cmp(&(&objects[b].kind, Reverse(objects[b].num)))
        });
    }

    pub fn recep_by_name(&self, name: &str) -> Option<usize> {
        match self.names.get(name) {
            Some(Ent::Recep(r)) => Some(*r),
            _ => None,
        }
    }

    pub fn obj_by_name(&self, name: &str) -> Option<usize> {
        match self.names.get(name) {
            Some(Ent::Obj(o)) => Some(*o),
            _ => None,
        }
    }

    /// "You are in the middle of a room. …\n\nYour task is to: …".
    pub fn first_observation(&self) -> String {
        let mut s = String::with_capacity(64 + 16 * self.receps.len());
        self.room_overview(&mut s);
        s.push_str("\n\nYour task is to: ");
        s.push_str(&self.goal.text);
        s
    }

    fn room_overview(&self, s: &mut String) {
        s.push_str("You are in the middle of a room. Looking quickly around you, you see ");
        list_into(s, self.receps.iter().map(|r| r.name.as_str()));
        s.push('.');
    }

    /// ALFWorld's `examineReceptacle` text, also shown on arrival.
    fn view_recep(&mut self, r: usize, s: &mut String) {
        let rec = &self.receps[r];
        if rec.openable && !rec.open {
            let _ = write!(s, "The {} is closed.", rec.name);
            return;
        }
        if rec.openable {
            let _ = write!(s, "The {} is open. In it, you see ", rec.name);
        } else {
            let _ = write!(s, "On the {}, you see ", rec.name);
        }
        list_into(s, rec.contents.iter().map(|&o| self.objects[o].name.as_str()));
        s.push('.');
        self.receps[r].inspected = true;
    }

    fn examine_object(&self, o: usize) -> String {
        let ob = &self.objects[o];
        let n = &ob.name;
        let cat = catalog();
        if matches!(ob.kind.as_str(), "bowl" | "box" | "cup" | "mug" | "plate" | "pan" | "pot") {
            // Movable receptacles describe what they hold; nothing is ever put inside them here.
            return format!("This is a normal {n}. In it, you see nothing.");
        }
        match (ob.clean, ob.hot, ob.cool) {
            (true, true, _) => format!("This is a hot and clean {n}."),
            (true, _, true) => format!("This is a cool and clean {n}."),
            (_, true, _) => format!("This is a hot {n}."),
            (true, _, _) => format!("This is a clean {n}."),
            (_, _, true) => format!("This is a cold {n}."),
            _ if cat.toggleable(&ob.kind) && ob.toggled => format!("This {n} is on."),
            _ if cat.toggleable(&ob.kind) => format!("This {n} is off."),
            _ => format!("There's nothing special about {n}."),
        }
    }

    /// The object is where the agent can see it: held, or in an accessible receptacle here.
    fn reachable(&self, o: usize) -> bool {
        match self.objects[o].loc {
            None => self.holding == Some(o),
            Some(r) => self.at == Some(r) && self.receps[r].accessible(),
        }
    }

    /// Applies one action; `None` means "Nothing happens.".
    pub fn act(&mut self, action: &str) -> Option<String> {
        let cmd = normalise(action);
        let cat = catalog();
        let mut out = String::new();
        if cmd == "look" {
            match self.at {
                None => self.room_overview(&mut out),
                Some(r) => {
                    let _ = write!(
                        out,
                        "You are facing the {}. Next to it, you see nothing.",
                        self.receps[r].name
                    );
                }
            }
            return Some(out);
        }
        if cmd == "inventory" {
            return Some(match self.holding {
                Some(o) => format!("You are carrying: a {}.", self.objects[o].name),
                None => "You are not carrying anything.".to_string(),
            });
        }
        if let Some(name) = cmd.strip_prefix("go to ") {
            let r = self.recep_by_name(name)?;
            if self.at == Some(r) {
                return None;
            }
            self.at = Some(r);
            self.view_recep(r, &mut out);
            return Some(out);
        }
        if let Some(name) = cmd.strip_prefix("open ") {
            let r = self.recep_by_name(name)?;
            let rec = &mut self.receps[r];
            if self.at != Some(r) || !rec.openable || rec.open {
                return None;
            }
            rec.open = true;
            rec.opened_by_agent = true;
            let _ = write!(out, "You open the {}. ", rec.name);
            self.view_recep(r, &mut out);
            return Some(out);
        }
        if let Some(name) = cmd.strip_prefix("close ") {
            let r = self.recep_by_name(name)?;
            let rec = &mut self.receps[r];
            if self.at != Some(r) || !rec.openable || !rec.open {
                return None;
            }
            rec.open = false;
            rec.opened_by_agent = false;
            return Some(format!("You close the {}.", rec.name));
        }
        if let Some(rest) = cmd.strip_prefix("take ") {
            let (oname, rname) = rest.split_once(" from ")?;
            let (o, r) = (self.obj_by_name(oname)?, self.recep_by_name(rname)?);
            if self.holding.is_some()
                || self.at != Some(r)
                || self.objects[o].loc != Some(r)
                || !self.receps[r].accessible()
                || cat.toggleable(&self.objects[o].kind)
            {
                return None;
            }
            self.receps[r].contents.retain(|&x| x != o);
            self.objects[o].loc = None;
            self.holding = Some(o);
            return Some(format!(
                "You pick up the {} from the {}.",
                self.objects[o].name, self.receps[r].name
            ));
        }
        if let Some(rest) = cmd.strip_prefix("put ") {
            let (oname, rname) = rest.split_once(" in/on ")?;
            let (o, r) = (self.obj_by_name(oname)?, self.recep_by_name(rname)?);
            if self.holding != Some(o)
                || self.at != Some(r)
                || !self.receps[r].accessible()
                || !cat.can_contain(&self.receps[r].kind, &self.objects[o].kind)
            {
                return None;
            }
            self.holding = None;
            self.objects[o].loc = Some(r);
            self.receps[r].contents.push(o);
            self.sort_contents(r);
            return Some(format!(
                "You put the {} in/on the {}.",
                self.objects[o].name, self.receps[r].name
            ));
        }
        for (verb, appliance) in
            [("clean ", "sinkbasin"), ("heat ", "microwave"), ("cool ", "fridge")]
        {
            if let Some(rest) = cmd.strip_prefix(verb) {
                let (oname, rname) = rest.split_once(" with ")?;
                let (o, r) = (self.obj_by_name(oname)?, self.recep_by_name(rname)?);
                let kind = &self.objects[o].kind;
                let able = match appliance {
                    "sinkbasin" => cat.cleanable(kind),
                    "microwave" => cat.heatable(kind),
                    _ => cat.coolable(kind),
                };
                // As in ALFWorld, a closed microwave or fridge still works.
                if !able
                    || self.holding != Some(o)
                    || self.at != Some(r)
                    || self.receps[r].kind != appliance
                {
                    return None;
                }
                let ob = &mut self.objects[o];
                match appliance {
                    "sinkbasin" => ob.clean = true,
                    "microwave" => (ob.hot, ob.cool) = (true, false),
                    _ => (ob.cool, ob.hot) = (true, false),
                }
                let _ =
                    write!(out, "You {}the {} using the {}.", verb, ob.name, self.receps[r].name);
                return Some(out);
            }
        }
        if let Some(name) = cmd.strip_prefix("use ") {
            let o = self.obj_by_name(name)?;
            let ob = &self.objects[o];
            if !cat.toggleable(&ob.kind) || ob.loc.is_none() || ob.loc != self.at {
                return None;
            }
            self.objects[o].toggled = true;
            // ALFWorld's feedback reads its sticky `isToggled`, so every use says "on".
            return Some(format!("You turn on the {}.", self.objects[o].name));
        }
        if let Some(name) = cmd.strip_prefix("examine ") {
            if let Some(r) = self.recep_by_name(name) {
                if self.at != Some(r) {
                    return None;
                }
                self.view_recep(r, &mut out);
                return Some(out);
            }
            let o = self.obj_by_name(name)?;
            return self.reachable(o).then(|| self.examine_object(o));
        }
        None
    }

    /// The goal predicate of the task type (never "ran out of steps").
    pub fn won(&self) -> bool {
        let g = &self.goal;
        let in_target = |o: &Obj| o.loc.is_some_and(|r| self.receps[r].kind == g.target);
        let of_type = |o: &&Obj| o.kind == g.object;
        match g.task_type {
            TaskType::PickAndPlaceSimple => self.objects.iter().filter(of_type).any(in_target),
            TaskType::PickCleanThenPlaceInRecep => {
                self.objects.iter().filter(of_type).any(|o| o.clean && in_target(o))
            }
            TaskType::PickHeatThenPlaceInRecep => {
                self.objects.iter().filter(of_type).any(|o| o.hot && in_target(o))
            }
            TaskType::PickCoolThenPlaceInRecep => {
                self.objects.iter().filter(of_type).any(|o| o.cool && in_target(o))
            }
            TaskType::PickTwoObjAndPlace => self.receps.iter().any(|r| {
                r.kind == g.target
                    && r.contents.iter().filter(|&&o| self.objects[o].kind == g.object).count() >= 2
            }),
            TaskType::LookAtObjInLight => {
                self.holding.is_some_and(|h| self.objects[h].kind == g.object)
                    && self.objects.iter().any(|o| {
                        o.kind == g.target && o.toggled && o.loc.is_some() && o.loc == self.at
                    })
            }
        }
    }

    /// ALFWorld-style admissible commands for the current state, sorted.
    pub fn admissible(&self) -> Vec<String> {
        let cat = catalog();
        let mut out = vec!["inventory".to_string(), "look".to_string()];
        for (i, r) in self.receps.iter().enumerate() {
            if self.at != Some(i) {
                out.push(format!("go to {}", r.name));
            }
        }
        if let Some(h) = self.holding {
            out.push(format!("examine {}", self.objects[h].name));
        }
        if let Some(r) = self.at {
            let rec = &self.receps[r];
            out.push(format!("examine {}", rec.name));
            if rec.openable {
                out.push(format!("{} {}", if rec.open { "close" } else { "open" }, rec.name));
            }
            if rec.accessible() {
                for &o in &rec.contents {
                    let ob = &self.objects[o];
                    out.push(format!("examine {}", ob.name));
                    if cat.toggleable(&ob.kind) {
                        out.push(format!("use {}", ob.name));
                    } else if self.holding.is_none() {
                        out.push(format!("take {} from {}", ob.name, rec.name));
                    }
                }
            } else {
                for &o in &rec.contents {
                    if cat.toggleable(&self.objects[o].kind) {
                        out.push(format!("use {}", self.objects[o].name));
                    }
                }
            }
            if let Some(h) = self.holding {
                let ob = &self.objects[h];
                if rec.accessible() && cat.can_contain(&rec.kind, &ob.kind) {
                    out.push(format!("put {} in/on {}", ob.name, rec.name));
                }
                let verb = match rec.kind.as_str() {
                    "sinkbasin" if cat.cleanable(&ob.kind) => Some("clean"),
                    "microwave" if cat.heatable(&ob.kind) => Some("heat"),
                    "fridge" if cat.coolable(&ob.kind) => Some("cool"),
                    _ => None,
                };
                if let Some(v) = verb {
                    out.push(format!("{v} {} with {}", ob.name, rec.name));
                }
            }
        }
        out.sort();
        out
    }
}

fn resolve_goal(g: &GoalSpec) -> Goal {
    let norm = |s: &str| {
        s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect::<String>()
    };
    Goal {
        task_type: g.task_type,
        object: norm(&g.object),
        target: norm(g.target()),
        text: g.sentence(),
    }
}
