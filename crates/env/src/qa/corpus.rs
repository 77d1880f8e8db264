//! The QA corpus and questions: a generated encyclopedia of an invented world, or a user's
//! HotpotQA files.
//!
//! The generated world is a set of regions, each a country with its cities, people,
//! organisations and works, tied by relations (born in, based in, founded by, directed by,
//! published by) and dates. Every page opens with a paragraph of at most five sentences
//! holding its facts, so `search` shows them (ReAct's wikienv shows a page's first five
//! sentences), and a second paragraph that only `lookup` reaches.

use serde_json::Value;

use crate::shop::Rng;
use crate::EnvError;

/// One encyclopedia page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The title a search must name.
    pub title: String,
    /// Paragraphs separated by `\n`.
    pub text: String,
}

/// HotpotQA's two question types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionType {
    /// Find an entity, then a fact about it.
    Bridge,
    /// Compare a fact of two entities.
    Comparison,
}

impl QuestionType {
    /// HotpotQA's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            QuestionType::Bridge => "bridge",
            QuestionType::Comparison => "comparison",
        }
    }
}

/// A question with its answer and the pages that support it, in the order an expert reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Id (HotpotQA's `_id`).
    pub id: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub answer: String,
    /// Bridge or comparison.
    pub qtype: QuestionType,
    /// Titles of the supporting pages, in reading order.
    pub supporting: Vec<String>,
    /// The expert's thoughts: one before each search and one before finishing; empty for
    /// loaded questions, which get generic thoughts.
    pub thoughts: Vec<String>,
    /// Which region (generated) or 0 (loaded): splits keep regions apart.
    pub region: usize,
}

const FEMALE: &[&str] = &[
    "Adela", "Cosima", "Elsbeth", "Greta", "Ilona", "Katrin", "Mirela", "Odile", "Rosalind",
    "Tamsin", "Vesna", "Xenia", "Zofia", "Brigida", "Dagny", "Fenna", "Hedda", "Juliska", "Liesel",
    "Nora",
];
const MALE: &[&str] = &[
    "Bertram", "Dorian", "Florian", "Henrik", "Jasper", "Leopold", "Nikolas", "Pavel", "Quintus",
    "Soren", "Ulric", "Wendell", "Yannick", "Anselm", "Casimir", "Emeric", "Gideon", "Ivo",
    "Konrad", "Matthias",
];
const LAST: &[&str] = &[
    "Aldermann",
    "Brackwater",
    "Castellan",
    "Dunmore",
    "Eskildsen",
    "Farrowby",
    "Galloway",
    "Hollenbeck",
    "Isenhart",
    "Jovanic",
    "Kettering",
    "Lindqvist",
    "Marchetti",
    "Novak",
    "Oakhurst",
    "Pellegrin",
    "Quarles",
    "Ravensworth",
    "Sandoval",
    "Thorvald",
    "Underhill",
    "Valcourt",
    "Whitlock",
    "Yardley",
    "Zelenka",
    "Ashby",
    "Brenner",
    "Corvino",
    "Delacroix",
    "Everhart",
    "Fairbank",
    "Grimsby",
];
const COUNTRIES: &[(&str, &str)] = &[
    ("Valdoria", "Valdorian"),
    ("Estmark", "Estmarkish"),
    ("Corvania", "Corvanian"),
    ("Lusitra", "Lusitran"),
    ("Brenmoor", "Brenmoorish"),
    ("Ostravia", "Ostravian"),
    ("Tarvel", "Tarvelese"),
    ("Quenland", "Quenlandic"),
    ("Sarmatia Nova", "Sarmatian"),
    ("Kelvaro", "Kelvaran"),
    ("Ildara", "Ildaran"),
    ("Morvenia", "Morvenian"),
    ("Pellucia", "Pellucian"),
    ("Rhosland", "Rhoslandic"),
    ("Vintria", "Vintrian"),
    ("Aurenne", "Aurennian"),
    ("Dravonia", "Dravonian"),
    ("Halgaria", "Halgarian"),
    ("Nereth", "Nerethi"),
    ("Solvara", "Solvaran"),
    ("Trevania", "Trevanian"),
    ("Ulmora", "Ulmoran"),
    ("Zantora", "Zantoran"),
    ("Faldren", "Faldrenese"),
];
const CITY_A: &[&str] = &[
    "Ash", "Bel", "Cor", "Dun", "Elm", "Fal", "Glen", "Hal", "Iver", "Kings", "Lang", "Mar", "Nor",
    "Oster", "Pen", "Rook", "Stan", "Thorn", "Wex", "Yar",
];
const CITY_B: &[&str] = &[
    "ford", "haven", "mouth", "bury", "wick", "stead", "field", "gate", "holm", "port", "minster",
    "dale",
];
const RIVERS: &[&str] =
    &["Vessel", "Amberflow", "Lorne", "Silverrun", "Kest", "Orrin", "Tamber", "Wyre"];
const OCCUPATIONS: &[(&str, &str, &str)] = &[
    // occupation, the work kind they make, the verb the work page uses
    ("film director", "film", "directed by"),
    ("novelist", "novel", "written by"),
    ("composer", "opera", "composed by"),
    ("songwriter", "album", "recorded by"),
    ("playwright", "play", "written by"),
];
const ORG_KINDS: &[(&str, &str)] = &[
    // in the order of `OCCUPATIONS`: a creator's works are released by the matching kind
    ("film studio", "Pictures"),
    ("publishing house", "Press"),
    ("opera house", "Opera"),
    ("record label", "Records"),
    ("theatre company", "Players"),
];
const WORK_ADJ: &[&str] = &[
    "Silent",
    "Crimson",
    "Distant",
    "Hollow",
    "Golden",
    "Broken",
    "Northern",
    "Last",
    "Winter",
    "Hidden",
    "Paper",
    "Iron",
    "Velvet",
    "Burning",
    "Quiet",
    "Wandering",
];
const WORK_NOUN: &[&str] = &[
    "Harbor", "Lantern", "Orchard", "Meridian", "Season", "Garden", "Crown", "Tide", "Letter",
    "Mirror", "Bridge", "Compass", "Fields", "Sparrow", "Kingdom", "Voyage",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

struct Person {
    name: String,
    born: (u32, usize, u32),
    city: usize,
    occupation: usize,
    female: bool,
}
struct City {
    name: String,
    founded: u32,
    population: u32,
    river: &'static str,
}
struct Org {
    name: String,
    kind: usize,
    founded: u32,
    city: usize,
    founder: usize,
}
struct Work {
    title: String,
    year: u32,
    creator: usize,
    org: usize,
}
struct Region {
    country: (&'static str, &'static str),
    capital: usize,
    cities: Vec<City>,
    people: Vec<Person>,
    orgs: Vec<Org>,
    works: Vec<Work>,
}

/// The indefinite article for a word.
fn an(word: &str) -> &'static str {
    if word.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    }
}

fn date(d: (u32, usize, u32)) -> String {
    format!("{} {} {}", d.0, MONTHS[d.1], d.2)
}

fn thousands(n: u32) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A generated world: pages and questions with their region.
pub(crate) struct Generated {
    pub(crate) pages: Vec<Page>,
    pub(crate) questions: Vec<Question>,
    pub(crate) regions: usize,
}

fn unique(
    used: &mut std::collections::HashSet<String>,
    mut make: impl FnMut() -> String,
) -> String {
    loop {
        let s = make();
        if used.insert(s.to_lowercase()) {
            return s;
        }
    }
}

fn build_regions(n: usize, rng: &mut Rng) -> Vec<Region> {
    let mut used = std::collections::HashSet::new();
    let mut regions = Vec::new();
    for r in 0..n {
        let country = COUNTRIES[r % COUNTRIES.len()];
        used.insert(country.0.to_lowercase());
        let cities: Vec<City> = (0..5)
            .map(|_| City {
                name: unique(&mut used, || format!("{}{}", rng.pick(CITY_A), rng.pick(CITY_B))),
                founded: 1100 + rng.below(800) as u32,
                population: (20 + rng.below(980)) as u32 * 1000 + rng.below(10) as u32 * 100,
                river: RIVERS[rng.below(RIVERS.len())],
            })
            .collect();
        let people: Vec<Person> = (0..10)
            .map(|k| {
                let female = rng.chance(0.5);
                let first = if female { FEMALE } else { MALE };
                Person {
                    name: unique(&mut used, || format!("{} {}", rng.pick(first), rng.pick(LAST))),
                    born: (1 + rng.below(28) as u32, rng.below(12), 1880 + rng.below(100) as u32),
                    city: rng.below(5),
                    occupation: k % OCCUPATIONS.len(),
                    female,
                }
            })
            .collect();
        let orgs: Vec<Org> = (0..ORG_KINDS.len())
            .map(|kind| Org {
                name: unique(&mut used, || format!("{} {}", rng.pick(LAST), ORG_KINDS[kind].1)),
                kind,
                founded: 1850 + rng.below(120) as u32,
                city: rng.below(5),
                founder: rng.below(10),
            })
            .collect();
        let works: Vec<Work> = (0..8)
            .map(|k| {
                let creator = k % 10;
                let p = &people[creator];
                Work {
                    title: unique(&mut used, || {
                        format!("The {} {}", rng.pick(WORK_ADJ), rng.pick(WORK_NOUN))
                    }),
                    year: p.born.2 + 22 + rng.below(40) as u32,
                    creator,
                    org: p.occupation,
                }
            })
            .collect();
        regions.push(Region { country, capital: rng.below(5), cities, people, orgs, works });
    }
    regions
}

fn pages_of(r: &Region) -> Vec<Page> {
    let (country, demonym) = r.country;
    let mut pages = Vec::new();
    let capital = &r.cities[r.capital].name;
    pages.push(Page {
        title: country.to_string(),
        text: format!(
            "{country} is a country whose people are called {demonym}. Its capital and seat of government is {capital}. \
             Its largest cities include {}.\nThe {demonym} economy rests on trade along its rivers.",
            r.cities.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    });
    for c in &r.cities {
        pages.push(Page {
            title: c.name.clone(),
            text: format!(
                "{} is a city in {country}, on the {} river. It was founded in {}. It has a population of {}.\n\
                 The old market of {} dates from the year of its founding. Its people are known for their festivals.",
                c.name, c.river, c.founded, thousands(c.population), c.name
            ),
        });
    }
    for p in &r.people {
        let (occupation, _, _) = OCCUPATIONS[p.occupation];
        let (he, his) = if p.female { ("She", "her") } else { ("He", "his") };
        let known: Vec<&str> = r
            .works
            .iter()
            .filter(|w| r.people[w.creator].name == p.name)
            .map(|w| w.title.as_str())
            .collect();
        let known_text = if known.is_empty() {
            format!("{he} spent most of {his} life in {country}.")
        } else {
            format!("{he} is best known for {}.", known.join(" and "))
        };
        pages.push(Page {
            title: p.name.clone(),
            text: format!(
                "{} (born {}) is {} {demonym} {occupation}. {he} was born in {}, {country}. {known_text}\n\
                 In later years {} taught young artists. {he} received several national honours.",
                p.name,
                date(p.born),
                an(demonym),
                r.cities[p.city].name,
                p.name
            ),
        });
    }
    for o in &r.orgs {
        let (kind, _) = ORG_KINDS[o.kind];
        pages.push(Page {
            title: o.name.clone(),
            text: format!(
                "{} is {} {demonym} {kind} based in {}. It was founded in {} by {}.\n\
                 The {kind} moved to larger premises after the war. It remains privately owned.",
                o.name,
                an(demonym),
                r.cities[o.city].name,
                o.founded,
                r.people[o.founder].name
            ),
        });
    }
    for w in &r.works {
        let p = &r.people[w.creator];
        let (_, kind, verb) = OCCUPATIONS[p.occupation];
        let org = &r.orgs[w.org];
        pages.push(Page {
            title: w.title.clone(),
            text: format!(
                "{} is a {} {demonym} {kind} {verb} {}. It was released by {}.\n\
                 Critics praised {} on its release. It was restored for its anniversary.",
                w.title, w.year, p.name, org.name, w.title
            ),
        });
    }
    pages
}

fn creator_role(r: &Region, w: &Work) -> &'static str {
    match OCCUPATIONS[r.people[w.creator].occupation].1 {
        "film" => "director",
        "novel" | "play" => "author",
        "opera" => "composer",
        _ => "performer",
    }
}

/// Every question a region supports, bridge and comparison.
fn questions_of(r: &Region, region: usize, rng: &mut Rng) -> Vec<Question> {
    let mut qs = Vec::new();
    let mut push = |q: String, a: String, t: QuestionType, sup: Vec<String>, th: Vec<String>| {
        qs.push(Question {
            id: String::new(),
            question: q,
            answer: a,
            qtype: t,
            supporting: sup,
            thoughts: th,
            region,
        });
    };
    for w in &r.works {
        let p = &r.people[w.creator];
        let role = creator_role(r, w);
        let city = &r.cities[p.city];
        push(
            format!("In which city was the {role} of {} born?", w.title),
            city.name.clone(),
            QuestionType::Bridge,
            vec![w.title.clone(), p.name.clone()],
            vec![
                format!(
                    "I need to search {}, find its {role}, then find where the {role} was born.",
                    w.title
                ),
                format!(
                    "The {role} of {} is {}. I need to search {} and find the place of birth.",
                    w.title, p.name, p.name
                ),
                format!("{} was born in {}. So the answer is {}.", p.name, city.name, city.name),
            ],
        );
        push(
            format!("In what year was the {role} of {} born?", w.title),
            p.born.2.to_string(),
            QuestionType::Bridge,
            vec![w.title.clone(), p.name.clone()],
            vec![
                format!(
                    "I need to search {}, find its {role}, then find when the {role} was born.",
                    w.title
                ),
                format!(
                    "{} is by {}. I need to search {} to find the birth year.",
                    w.title, p.name, p.name
                ),
                format!("{} was born on {}. So the answer is {}.", p.name, date(p.born), p.born.2),
            ],
        );
        let org = &r.orgs[w.org];
        let founder = &r.people[org.founder];
        push(
            format!("Who founded the company that released {}?", w.title),
            founder.name.clone(),
            QuestionType::Bridge,
            vec![w.title.clone(), org.name.clone()],
            vec![
                format!("I need to search {}, find who released it, then find who founded that company.", w.title),
                format!("{} was released by {}. I need to search {} to find its founder.", w.title, org.name, org.name),
                format!("{} was founded by {}. So the answer is {}.", org.name, founder.name, founder.name),
            ],
        );
    }
    for o in &r.orgs {
        let c = &r.cities[o.city];
        push(
            format!("What is the population of the city where {} is based?", o.name),
            thousands(c.population),
            QuestionType::Bridge,
            vec![o.name.clone(), c.name.clone()],
            vec![
                format!("I need to search {}, find the city it is based in, then find that city's population.", o.name),
                format!("{} is based in {}. I need to search {} to find its population.", o.name, c.name, c.name),
                format!("{} has a population of {}. So the answer is {}.", c.name, thousands(c.population), thousands(c.population)),
            ],
        );
    }
    let n = r.people.len();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&r.people[i], &r.people[j]);
            let (ka, kb) = ((a.born.2, a.born.1, a.born.0), (b.born.2, b.born.1, b.born.0));
            if ka == kb {
                continue;
            }
            let first = if ka < kb { a } else { b };
            push(
                format!("Who was born first, {} or {}?", a.name, b.name),
                first.name.clone(),
                QuestionType::Comparison,
                vec![a.name.clone(), b.name.clone()],
                vec![
                    format!("I need to search {} and {}, find their dates of birth, then find who was born first.", a.name, b.name),
                    format!("{} was born on {}. I need to search {} next.", a.name, date(a.born), b.name),
                    format!("{} was born on {}, {} on {}. So {} was born first.", a.name, date(a.born), b.name, date(b.born), first.name),
                ],
            );
            if rng.chance(0.3) {
                let same = a.occupation == b.occupation;
                let yes = if same { "yes" } else { "no" };
                push(
                    format!("Are {} and {} both {}s?", a.name, b.name, OCCUPATIONS[a.occupation].0),
                    yes.to_string(),
                    QuestionType::Comparison,
                    vec![a.name.clone(), b.name.clone()],
                    vec![
                        format!(
                            "I need to search {} and {} and find their occupations.",
                            a.name, b.name
                        ),
                        format!(
                            "{} is a {}. I need to search {} next.",
                            a.name, OCCUPATIONS[a.occupation].0, b.name
                        ),
                        format!(
                            "{} is a {}. So the answer is {yes}.",
                            b.name, OCCUPATIONS[b.occupation].0
                        ),
                    ],
                );
            }
        }
    }
    for i in 0..r.cities.len() {
        for j in i + 1..r.cities.len() {
            let (a, b) = (&r.cities[i], &r.cities[j]);
            if a.founded != b.founded {
                let older = if a.founded < b.founded { a } else { b };
                push(
                    format!("Which city was founded earlier, {} or {}?", a.name, b.name),
                    older.name.clone(),
                    QuestionType::Comparison,
                    vec![a.name.clone(), b.name.clone()],
                    vec![
                        format!(
                            "I need to search {} and {} and find when each was founded.",
                            a.name, b.name
                        ),
                        format!(
                            "{} was founded in {}. I need to search {} next.",
                            a.name, a.founded, b.name
                        ),
                        format!(
                            "{} was founded in {}, {} in {}. So {} was founded earlier.",
                            a.name, a.founded, b.name, b.founded, older.name
                        ),
                    ],
                );
            }
            if a.population != b.population {
                let bigger = if a.population > b.population { a } else { b };
                push(
                    format!("Which city has a larger population, {} or {}?", a.name, b.name),
                    bigger.name.clone(),
                    QuestionType::Comparison,
                    vec![a.name.clone(), b.name.clone()],
                    vec![
                        format!(
                            "I need to search {} and {} and compare their populations.",
                            a.name, b.name
                        ),
                        format!(
                            "{} has a population of {}. I need to search {} next.",
                            a.name,
                            thousands(a.population),
                            b.name
                        ),
                        format!(
                            "{} has {} people and {} has {}. So {} is larger.",
                            a.name,
                            thousands(a.population),
                            b.name,
                            thousands(b.population),
                            bigger.name
                        ),
                    ],
                );
            }
        }
    }
    for i in 0..r.works.len() {
        for j in i + 1..r.works.len() {
            let (a, b) = (&r.works[i], &r.works[j]);
            if a.year != b.year && rng.chance(0.5) {
                let first = if a.year < b.year { a } else { b };
                push(
                    format!("Which came out first, {} or {}?", a.title, b.title),
                    first.title.clone(),
                    QuestionType::Comparison,
                    vec![a.title.clone(), b.title.clone()],
                    vec![
                        format!(
                            "I need to search {} and {} and find when each came out.",
                            a.title, b.title
                        ),
                        format!(
                            "{} came out in {}. I need to search {} next.",
                            a.title, a.year, b.title
                        ),
                        format!(
                            "{} came out in {}, {} in {}. So {} came out first.",
                            a.title, a.year, b.title, b.year, first.title
                        ),
                    ],
                );
            }
        }
    }
    qs
}

/// Generates `regions` regions from `seed`: their pages and every question they support.
pub(crate) fn generate(regions: usize, seed: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let world = build_regions(regions, &mut rng);
    let mut pages = Vec::new();
    let mut questions = Vec::new();
    for (i, r) in world.iter().enumerate() {
        pages.extend(pages_of(r));
        questions.extend(questions_of(r, i, &mut rng));
    }
    for (i, q) in questions.iter_mut().enumerate() {
        q.id = format!("gen-{seed}-{i}");
    }
    Generated { pages, questions, regions }
}

fn bad(record: &str, message: impl std::fmt::Display) -> EnvError {
    EnvError::BadSpec(format!("HotpotQA questions, {record}: {message}"))
}

fn sentences_of(record: &str, v: &Value) -> Result<String, EnvError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(record, "a sentence is not a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|s| s.concat().trim().to_string()),
        other => Err(bad(record, format!("expected sentences, found {other}"))),
    }
}

/// Reads questions in HotpotQA's layout (a list of `{"_id", "question", "answer", "type",
/// "supporting_facts": [[title, sentence], …], "context": [[title, [sentences…]], …]}`) and an
/// optional extra corpus (a list of `[title, [sentences…]]` or `{"title", "text"}`). Pages are
/// the union of the corpus and every question's context, first occurrence of a title winning;
/// a page's text is its sentences joined, as HotpotQA's sentences carry their own spaces.
pub(crate) fn from_hotpot(
    questions: &Value,
    corpus: Option<&Value>,
) -> Result<(Vec<Page>, Vec<Question>), EnvError> {
    let list =
        questions.as_array().ok_or_else(|| bad("top level", "expected a list of questions"))?;
    let mut pages = Vec::new();
    let mut titles = std::collections::HashSet::new();
    let mut add_page = |title: String, text: String| {
        if titles.insert(title.clone()) {
            pages.push(Page { title, text });
        }
    };
    if let Some(corpus) = corpus {
        let items = corpus
            .as_array()
            .ok_or_else(|| EnvError::BadSpec("HotpotQA corpus: expected a list of pages".into()))?;
        for (i, item) in items.iter().enumerate() {
            let rec = format!("corpus page {i}");
            match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let title =
                        pair[0].as_str().ok_or_else(|| bad(&rec, "title is not a string"))?;
                    add_page(title.to_string(), sentences_of(&rec, &pair[1])?);
                }
                Value::Object(o) => {
                    let title = o
                        .get("title")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(&rec, "missing string `title`"))?;
                    let text = o
                        .get("text")
                        .or_else(|| o.get("sentences"))
                        .ok_or_else(|| bad(&rec, "missing `text`"))?;
                    add_page(title.to_string(), sentences_of(&rec, text)?);
                }
                other => {
                    return Err(bad(
                        &rec,
                        format!("expected [title, sentences] or an object, found {other}"),
                    ))
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, q) in list.iter().enumerate() {
        let id = q.get("_id").and_then(Value::as_str).unwrap_or_default().to_string();
        let rec =
            if id.is_empty() { format!("record {i}") } else { format!("record {i} (_id {id})") };
        let text = q
            .get("question")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&rec, "missing string `question`"))?;
        let answer = q
            .get("answer")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&rec, "missing string `answer`"))?;
        let qtype = match q.get("type").and_then(Value::as_str) {
            Some("bridge") => QuestionType::Bridge,
            Some("comparison") => QuestionType::Comparison,
            other => {
                return Err(bad(
                    &rec,
                    format!("`type` should be \"bridge\" or \"comparison\", found {other:?}"),
                ))
            }
        };
        for (j, c) in q.get("context").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let crec = format!("{rec} context {j}");
            let pair = c
                .as_array()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| bad(&crec, "expected [title, sentences]"))?;
            let title = pair[0].as_str().ok_or_else(|| bad(&crec, "title is not a string"))?;
            add_page(title.to_string(), sentences_of(&crec, &pair[1])?);
        }
        let mut supporting: Vec<String> = Vec::new();
        for (j, f) in
            q.get("supporting_facts").and_then(Value::as_array).into_iter().flatten().enumerate()
        {
            let title =
                f.as_array().and_then(|p| p.first()).and_then(Value::as_str).ok_or_else(|| {
                    bad(&format!("{rec} supporting fact {j}"), "expected [title, sentence index]")
                })?;
            if !supporting.iter().any(|s| s == title) {
                supporting.push(title.to_string());
            }
        }
        out.push(Question {
            id: if id.is_empty() { format!("record-{i}") } else { id },
            question: text.to_string(),
            answer: answer.to_string(),
            qtype,
            supporting,
            thoughts: Vec::new(),
            region: 0,
        });
    }
    if out.is_empty() {
        return Err(bad("top level", "no questions"));
    }
    Ok((pages, out))
}
