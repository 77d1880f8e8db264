//! The household world's rules and observation texts, one by one, on small hand-made scenes.

use stepagent_env::household::{HouseholdConfig, HouseholdWorld, SceneSpec, TaskType, INSTRUCTION};
use stepagent_env::{registry, Environment, Split, StepOutcome, TaskId, World};

fn world_of(json: &str, max_steps: usize) -> Box<dyn Environment> {
    let spec = SceneSpec::from_json(json).unwrap();
    let world = HouseholdWorld::from_specs(
        [(Split::Unseen, spec)],
        HouseholdConfig { max_steps, ..Default::default() },
    )
    .unwrap();
    let mut env = world.new_env().unwrap();
    env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
    env
}

const KITCHEN: &str = r#"{
  "receptacles": [
    {"name": "sinkbasin 1"},
    {"name": "countertop 1", "contents": ["mug 1", "apple 1", "fork 3", "egg 1", "egg 2"]},
    {"name": "fridge 1", "contents": ["tomato 1"]},
    {"name": "microwave 1"},
    {"name": "cabinet 2"},
    {"name": "cabinet 10"},
    {"name": "shelf 1"}
  ],
  "goal": {"type": "pick_clean_then_place_in_recep", "object": "apple", "receptacle": "fridge"}
}"#;

fn kitchen() -> Box<dyn Environment> {
    world_of(KITCHEN, 40)
}

#[track_caller]
fn says(env: &mut dyn Environment, action: &str, expected: &str) -> StepOutcome {
    let out = env.step(action).unwrap();
    assert_eq!(out.observation, expected, "after `{action}`");
    assert_eq!(out.valid, expected != "Nothing happens.", "validity of `{action}`");
    out
}

#[test]
fn first_observation_lists_receptacles_by_type_then_number_down() {
    let spec = SceneSpec::from_json(KITCHEN).unwrap();
    let world =
        HouseholdWorld::from_specs([(Split::Unseen, spec)], HouseholdConfig::default()).unwrap();
    let first = world.new_env().unwrap().reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
    assert_eq!(
        first,
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 10, a cabinet 2, \
         a countertop 1, a fridge 1, a microwave 1, a shelf 1, and a sinkbasin 1.\n\nYour task is to: put a clean apple in fridge."
    );
}

#[test]
fn go_to_shows_contents_with_article_a_sorted_and_not_twice() {
    let mut env = kitchen();
    says(
        &mut *env,
        "go to countertop 1",
        "On the countertop 1, you see a apple 1, a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
    says(&mut *env, "go to countertop 1", "Nothing happens.");
    assert_eq!(env.steps(), 2, "an impossible action still counts as a step");
    says(&mut *env, "go to shelf 1", "On the shelf 1, you see nothing.");
    says(&mut *env, "go to garden 1", "Nothing happens.");
}

#[test]
fn open_close_and_closed_containers() {
    let mut env = kitchen();
    says(&mut *env, "open fridge 1", "Nothing happens.");
    says(&mut *env, "go to fridge 1", "The fridge 1 is closed.");
    says(&mut *env, "take tomato 1 from fridge 1", "Nothing happens.");
    says(&mut *env, "close fridge 1", "Nothing happens.");
    says(
        &mut *env,
        "open fridge 1",
        "You open the fridge 1. The fridge 1 is open. In it, you see a tomato 1.",
    );
    says(&mut *env, "open fridge 1", "Nothing happens.");
    says(&mut *env, "examine fridge 1", "The fridge 1 is open. In it, you see a tomato 1.");
    says(&mut *env, "go to cabinet 2", "The cabinet 2 is closed.");
    says(
        &mut *env,
        "open cabinet 2",
        "You open the cabinet 2. The cabinet 2 is open. In it, you see nothing.",
    );
    says(&mut *env, "go to fridge 1", "The fridge 1 is open. In it, you see a tomato 1.");
    says(&mut *env, "close fridge 1", "You close the fridge 1.");
    says(&mut *env, "examine fridge 1", "The fridge 1 is closed.");
    says(&mut *env, "open countertop 1", "Nothing happens.");
}

#[test]
fn take_put_inventory_and_one_hand() {
    let mut env = kitchen();
    says(&mut *env, "inventory", "You are not carrying anything.");
    says(&mut *env, "take apple 1 from countertop 1", "Nothing happens.");
    says(
        &mut *env,
        "go to countertop 1",
        "On the countertop 1, you see a apple 1, a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
    says(&mut *env, "take apple 1 from fridge 1", "Nothing happens.");
    says(
        &mut *env,
        "take apple 1 from countertop 1",
        "You pick up the apple 1 from the countertop 1.",
    );
    says(&mut *env, "take mug 1 from countertop 1", "Nothing happens.");
    says(&mut *env, "inventory", "You are carrying: a apple 1.");
    says(
        &mut *env,
        "examine countertop 1",
        "On the countertop 1, you see a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
    says(&mut *env, "put apple 1 in countertop 1", "Nothing happens.");
    says(&mut *env, "put apple 1 on countertop 1", "Nothing happens.");
    says(
        &mut *env,
        "put apple 1 in/on countertop 1",
        "You put the apple 1 in/on the countertop 1.",
    );
    says(
        &mut *env,
        "examine countertop 1",
        "On the countertop 1, you see a apple 1, a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
    says(&mut *env, "put apple 1 in/on countertop 1", "Nothing happens.");
}

#[test]
fn put_obeys_alfworld_receptacle_rules() {
    let mut env = kitchen();
    says(
        &mut *env,
        "go to countertop 1",
        "On the countertop 1, you see a apple 1, a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
    says(
        &mut *env,
        "take apple 1 from countertop 1",
        "You pick up the apple 1 from the countertop 1.",
    );
    // ALFWorld's constants: a shelf holds no fruit.
    says(&mut *env, "go to shelf 1", "On the shelf 1, you see nothing.");
    says(&mut *env, "put apple 1 in/on shelf 1", "Nothing happens.");
    // Closed containers must be opened first.
    says(&mut *env, "go to fridge 1", "The fridge 1 is closed.");
    says(&mut *env, "put apple 1 in/on fridge 1", "Nothing happens.");
}

#[test]
fn clean_heat_cool_change_state_and_examine_tells() {
    let mut env = kitchen();
    says(
        &mut *env,
        "go to countertop 1",
        "On the countertop 1, you see a apple 1, a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
    says(&mut *env, "examine apple 1", "There's nothing special about apple 1.");
    says(&mut *env, "examine mug 1", "This is a normal mug 1. In it, you see nothing.");
    says(
        &mut *env,
        "take apple 1 from countertop 1",
        "You pick up the apple 1 from the countertop 1.",
    );
    says(&mut *env, "clean apple 1 with sinkbasin 1", "Nothing happens.");
    says(&mut *env, "go to sinkbasin 1", "On the sinkbasin 1, you see nothing.");
    says(&mut *env, "heat apple 1 with sinkbasin 1", "Nothing happens.");
    says(
        &mut *env,
        "clean apple 1 with sinkbasin 1",
        "You clean the apple 1 using the sinkbasin 1.",
    );
    says(&mut *env, "examine apple 1", "This is a clean apple 1.");
    // Heating and cooling work on a closed appliance, as in ALFWorld (and ETO's records).
    says(&mut *env, "go to microwave 1", "The microwave 1 is closed.");
    says(&mut *env, "heat apple 1 with microwave 1", "You heat the apple 1 using the microwave 1.");
    says(&mut *env, "examine apple 1", "This is a hot and clean apple 1.");
    says(&mut *env, "go to fridge 1", "The fridge 1 is closed.");
    says(&mut *env, "cool apple 1 with fridge 1", "You cool the apple 1 using the fridge 1.");
    says(&mut *env, "examine apple 1", "This is a cool and clean apple 1.");
    says(&mut *env, "examine tomato 1", "Nothing happens.");
}

#[test]
fn look_and_unparseable_commands() {
    let mut env = kitchen();
    says(
        &mut *env,
        "look",
        "You are in the middle of a room. Looking quickly around you, you see a cabinet 10, a cabinet 2, \
         a countertop 1, a fridge 1, a microwave 1, a shelf 1, and a sinkbasin 1.",
    );
    says(&mut *env, "go to shelf 1", "On the shelf 1, you see nothing.");
    says(&mut *env, "look", "You are facing the shelf 1. Next to it, you see nothing.");
    for junk in [
        "",
        "dance",
        "go to",
        "take",
        "put apple 1",
        "toggle desklamp 1 desk 1",
        "heat with microwave 1",
    ] {
        says(&mut *env, junk, "Nothing happens.");
    }
    // Typed loosely: case and extra spaces do not matter.
    says(
        &mut *env,
        "  Go   TO Countertop 1 ",
        "On the countertop 1, you see a apple 1, a egg 2, a egg 1, a fork 3, and a mug 1.",
    );
}

fn run_to_win(json: &str, actions: &[&str]) -> Vec<StepOutcome> {
    let mut env = world_of(json, 40);
    actions.iter().map(|a| env.step(a).unwrap()).collect()
}

#[track_caller]
fn wins_only_at_last(outs: &[StepOutcome]) {
    let (last, before) = outs.split_last().unwrap();
    for o in before {
        assert!(!o.won && !o.done && o.reward == 0.0, "{o:?}");
    }
    assert!(last.won && last.done && last.reward == 1.0, "{last:?}");
}

#[test]
fn clean_goal_needs_the_clean_object_in_the_target() {
    let base =
        ["go to countertop 1", "take apple 1 from countertop 1", "go to fridge 1", "open fridge 1"];
    // Put unclean: no win.
    let outs = run_to_win(KITCHEN, &[&base[..], &["put apple 1 in/on fridge 1"]].concat());
    assert!(!outs.last().unwrap().won);
    let outs = run_to_win(
        KITCHEN,
        &[
            "go to countertop 1",
            "take apple 1 from countertop 1",
            "go to sinkbasin 1",
            "clean apple 1 with sinkbasin 1",
            "go to fridge 1",
            "open fridge 1",
            "put apple 1 in/on fridge 1",
        ],
    );
    wins_only_at_last(&outs);
}

fn with_goal(goal: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(KITCHEN).unwrap();
    v["goal"] = serde_json::from_str(goal).unwrap();
    v.to_string()
}

#[test]
fn simple_heat_and_cool_goals() {
    let simple = with_goal(
        r#"{"type": "pick_and_place_simple", "object": "egg", "receptacle": "microwave"}"#,
    );
    wins_only_at_last(&run_to_win(
        &simple,
        &[
            "go to countertop 1",
            "take egg 2 from countertop 1",
            "go to microwave 1",
            "open microwave 1",
            "put egg 2 in/on microwave 1",
        ],
    ));
    let heat = with_goal(
        r#"{"type": "pick_heat_then_place_in_recep", "object": "egg", "receptacle": "countertop"}"#,
    );
    let outs = run_to_win(
        &heat,
        &["go to countertop 1", "take egg 1 from countertop 1", "put egg 1 in/on countertop 1"],
    );
    assert!(!outs.last().unwrap().won, "a cold egg put back is no hot egg");
    wins_only_at_last(&run_to_win(
        &heat,
        &[
            "go to countertop 1",
            "take egg 1 from countertop 1",
            "go to microwave 1",
            "heat egg 1 with microwave 1",
            "go to countertop 1",
            "put egg 1 in/on countertop 1",
        ],
    ));
    let cool = with_goal(
        r#"{"type": "pick_cool_then_place_in_recep", "object": "apple", "receptacle": "countertop"}"#,
    );
    // Heating after cooling undoes it.
    let outs = run_to_win(
        &cool,
        &[
            "go to countertop 1",
            "take apple 1 from countertop 1",
            "go to fridge 1",
            "cool apple 1 with fridge 1",
            "go to microwave 1",
            "heat apple 1 with microwave 1",
            "go to countertop 1",
            "put apple 1 in/on countertop 1",
        ],
    );
    assert!(!outs.last().unwrap().won);
    wins_only_at_last(&run_to_win(
        &cool,
        &[
            "go to countertop 1",
            "take apple 1 from countertop 1",
            "go to fridge 1",
            "cool apple 1 with fridge 1",
            "go to countertop 1",
            "put apple 1 in/on countertop 1",
        ],
    ));
}

#[test]
fn two_objects_must_share_one_receptacle() {
    let json = r#"{
      "receptacles": [
        {"name": "countertop 1", "contents": ["egg 1", "egg 2"]},
        {"name": "diningtable 1"}, {"name": "diningtable 2"}
      ],
      "goal": {"type": "pick_two_obj_and_place", "object": "egg", "receptacle": "diningtable"}
    }"#;
    let outs = run_to_win(
        json,
        &[
            "go to countertop 1",
            "take egg 1 from countertop 1",
            "go to diningtable 1",
            "put egg 1 in/on diningtable 1",
            "go to countertop 1",
            "take egg 2 from countertop 1",
            "go to diningtable 2",
            "put egg 2 in/on diningtable 2",
        ],
    );
    assert!(outs.iter().all(|o| !o.won), "one egg on each table is not two on one");
    wins_only_at_last(&run_to_win(
        json,
        &[
            "go to countertop 1",
            "take egg 1 from countertop 1",
            "go to diningtable 1",
            "put egg 1 in/on diningtable 1",
            "go to countertop 1",
            "take egg 2 from countertop 1",
            "go to diningtable 1",
            "put egg 2 in/on diningtable 1",
        ],
    ));
}

#[test]
fn lamp_goal_holds_the_object_next_to_a_lit_lamp() {
    let json = r#"{
      "receptacles": [
        {"name": "desk 1", "contents": ["desklamp 1", "mug 1"]},
        {"name": "bed 1", "contents": ["book 1"]}
      ],
      "goal": {"type": "look_at_obj_in_light", "object": "book", "lamp": "desklamp"}
    }"#;
    let mut env = world_of(json, 40);
    says(&mut *env, "use desklamp 1", "Nothing happens.");
    says(&mut *env, "go to desk 1", "On the desk 1, you see a desklamp 1, and a mug 1.");
    says(&mut *env, "examine desklamp 1", "This desklamp 1 is off.");
    says(&mut *env, "take desklamp 1 from desk 1", "Nothing happens.");
    let out = says(&mut *env, "use desklamp 1", "You turn on the desklamp 1.");
    assert!(!out.won, "not holding the book yet");
    says(&mut *env, "examine desklamp 1", "This desklamp 1 is on.");
    says(&mut *env, "use desklamp 1", "You turn on the desklamp 1.");
    says(&mut *env, "go to bed 1", "On the bed 1, you see a book 1.");
    let out = says(&mut *env, "take book 1 from bed 1", "You pick up the book 1 from the bed 1.");
    assert!(!out.won, "the lamp is not here");
    let out = says(&mut *env, "go to desk 1", "On the desk 1, you see a desklamp 1, and a mug 1.");
    assert!(out.won && out.done && out.reward == 1.0, "holding the book by the lit lamp: {out:?}");
}

#[test]
fn out_of_steps_is_never_success_and_the_episode_ends() {
    let mut env = world_of(KITCHEN, 3);
    for i in 1..=3 {
        let out = env.step("go to countertop 1").unwrap();
        assert_eq!(out.steps, i);
        assert_eq!(out.done, i == 3);
        assert!(!out.won && out.reward == 0.0);
    }
    assert!(env.step("look").is_err(), "stepping a finished episode is an error");
    assert!(env.expert_step().is_none());
    assert!(env.admissible_actions().is_empty());
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    assert!(world.new_env().unwrap().step("look").is_err(), "stepping before reset is an error");
}

#[test]
fn admissible_actions_are_alfworld_style_and_all_valid() {
    let mut env = kitchen();
    let adm = env.admissible_actions();
    assert!(adm.contains(&"go to fridge 1".to_string()) && adm.contains(&"look".to_string()));
    env.step("go to countertop 1").unwrap();
    let adm = env.admissible_actions();
    assert!(!adm.contains(&"go to countertop 1".to_string()));
    assert!(adm.contains(&"take apple 1 from countertop 1".to_string()), "{adm:?}");
    env.step("take apple 1 from countertop 1").unwrap();
    env.step("go to sinkbasin 1").unwrap();
    let adm = env.admissible_actions();
    assert!(adm.contains(&"clean apple 1 with sinkbasin 1".to_string()), "{adm:?}");
    assert!(adm.contains(&"put apple 1 in/on sinkbasin 1".to_string()), "{adm:?}");
}

#[test]
fn the_instruction_is_etos_prompt_and_the_registry_opens_the_world() {
    assert!(INSTRUCTION.starts_with("Interact with a household to solve a task."));
    assert!(
        INSTRUCTION.contains("2. task {obj} from {recep}") && INSTRUCTION.contains("envrionment")
    );
    let world = registry::open("household", &serde_json::Value::Null).unwrap();
    assert_eq!(world.name(), "household");
    assert_eq!(world.max_steps(), 40);
    assert_eq!(world.instruction(), INSTRUCTION);
    let world =
        registry::open("household", &serde_json::json!({"max_steps": 12, "train_tasks": 50}))
            .unwrap();
    assert_eq!((world.max_steps(), world.num_tasks(Split::Train)), (12, 50));
    let err = registry::open("household", &serde_json::json!({"max_step": 12}))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("max_step") && err.contains("household"), "{err}");
    assert!(registry::open("household", &serde_json::json!({"max_steps": 0})).is_err());
}

#[test]
fn generated_tasks_cover_all_types_and_keep_unseen_rooms_apart() {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    assert!(
        world.num_tasks(Split::Train) >= 1000
            && world.num_tasks(Split::Seen) >= 1000
            && world.num_tasks(Split::Unseen) >= 1000
    );
    let unseen_rooms = [10, 219, 308, 424];
    for i in 0..300 {
        let plan = world.floor_plan(TaskId::new(Split::Unseen, i)).unwrap().unwrap();
        assert!(unseen_rooms.contains(&plan), "unseen task {i} uses room {plan}");
        for split in [Split::Train, Split::Seen] {
            let plan = world.floor_plan(TaskId::new(split, i)).unwrap().unwrap();
            assert!(!unseen_rooms.contains(&plan), "{split} task {i} uses held-out room {plan}");
        }
    }
    for split in Split::ALL {
        let mut types: Vec<String> =
            (0..12).map(|i| world.task_type(TaskId::new(split, i)).unwrap()).collect();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), 6, "{split}: {types:?}");
    }
    for ty in TaskType::ALL {
        assert!(world.task_type(TaskId::new(Split::Train, ty as usize)).unwrap() == ty.as_str());
    }
    assert!(world.task_type(TaskId::new(Split::Seen, 1_000)).is_err());
    let mut env = world.new_env().unwrap();
    assert!(env.reset(TaskId::new(Split::Unseen, 1_000), 0).is_err());
}

#[test]
fn goals_read_as_alfworld_phrasings() {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    let mut env = world.new_env().unwrap();
    for i in 0..60 {
        let first = env.reset(TaskId::new(Split::Train, i), 0).unwrap();
        let goal = first.split_once("\n\nYour task is to: ").unwrap().1;
        let (ty, _, _) = TaskType::parse_goal(goal).unwrap_or_else(|| panic!("task {i}: `{goal}`"));
        assert_eq!(ty.as_str(), world.task_type(TaskId::new(Split::Train, i)).unwrap());
        assert!(goal.ends_with('.'));
    }
}

#[test]
fn generated_scenes_are_valid_specs() {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    for split in Split::ALL {
        for i in 0..300 {
            let spec = world.scene_spec(TaskId::new(split, i), i as u64).unwrap();
            spec.validate().unwrap_or_else(|e| panic!("{split}/{i}: {e}"));
            let objects: usize = spec.receptacles.iter().map(|r| r.contents.len()).sum();
            assert!(objects >= 2, "{split}/{i}: a bare room");
        }
    }
}

#[test]
fn seeds_move_objects_but_not_the_goal() {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    let t = TaskId::new(Split::Train, 7);
    let (a, b) = (world.scene_spec(t, 1).unwrap(), world.scene_spec(t, 2).unwrap());
    assert_eq!(a.goal, b.goal);
    assert_eq!(
        a.receptacles.iter().map(|r| &r.name).collect::<Vec<_>>(),
        b.receptacles.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    assert_ne!(a, b, "a different seed places objects elsewhere");
    assert_eq!(a, world.scene_spec(t, 1).unwrap());
    // A generated scene is a valid spec and round-trips through JSON.
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(SceneSpec::from_json(&json).unwrap(), a);
}
