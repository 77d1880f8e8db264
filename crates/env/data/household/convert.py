#!/usr/bin/env python3
"""One-off conversion of ALFWorld's scene facts into `floorplans.json`.

Run once, by hand, against an unpacked `alfworld==0.4.2` wheel (MIT licence):

    python3 -m pip download --no-deps alfworld==0.4.2 -d /tmp/alfw
    unzip -q /tmp/alfw/alfworld-0.4.2-py3-none-any.whl -d /tmp/alfw/x
    python3 convert.py /tmp/alfw/x/alfworld > floorplans.json

Reads `gen/layouts/FloorPlan*-objects.json` (which object and receptacle types a room holds),
`gen/layouts/FloorPlan*-openable.json` (one key per receptacle instance, giving how many of each
receptacle type a room holds) and `gen/constants.py` (which object types may go in which
receptacle types; which types are openable, cleanable, heatable, coolable, toggleable). The
output is what the Rust crate embeds; the crate never reads the wheel.
"""
import ast
import glob
import json
import os
import re
import sys

# Static receptacles ALFWorld's text world lists in a room. Movable receptacles (bowl, cup, mug,
# plate, pan, pot, box) are objects there: the agent picks them up like any other object.
MOVABLE = {"Bowl", "Box", "Cup", "Mug", "Plate", "Pan", "Pot"}
# The -openable.json files name a sink or a bathtub where ALFWorld's text shows their basins.
RENAME = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}
# The layout files hold no stove-burner instances; ALFRED kitchens have four burners (a few have
# six), so every kitchen gets four.
DEFAULT_COUNT = {"StoveBurner": 4}
LAMPS = ["DeskLamp", "FloorLamp"]
# ALFRED's valid_unseen rooms: one kitchen, living room, bedroom and bathroom that no training
# task uses. The unseen split draws only from these.
UNSEEN = [10, 219, 308, 424]


def literal(src, name):
    """The value of a top-level `NAME = <literal>` assignment in constants.py."""
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise KeyError(name)


def room_type(n):
    return {0: "kitchen", 2: "livingroom", 3: "bedroom", 4: "bathroom"}[n // 100]


def main(root):
    src = open(os.path.join(root, "gen", "constants.py")).read()
    recep_types = set(literal(src, "RECEPTACLES")) - MOVABLE
    can_contain = literal(src, "VAL_RECEPTACLE_OBJECTS")
    # constants.py gives the three table types one shared entry, then renames it.
    tabletop = can_contain.pop("TableTop")
    for t in ("DiningTable", "CoffeeTable", "SideTable"):
        can_contain[t] = tabletop
    actions = literal(src, "VAL_ACTION_OBJECTS")
    openable = literal(src, "OPENABLE_CLASS_LIST")
    unsliced = lambda s: sorted(t for t in s if not t.endswith("Sliced"))
    placeable = set()
    for objs in can_contain.values():
        placeable |= set(unsliced(objs))

    plans = []
    for path in glob.glob(os.path.join(root, "gen", "layouts", "FloorPlan*-objects.json")):
        n = int(re.search(r"FloorPlan(\d+)-objects", path).group(1))
        types = set(json.load(open(path)))
        counts = {}
        for key in json.load(open(path.replace("-objects", "-openable"))):
            t = key.split("|")[0]
            t = RENAME.get(t, t)
            counts[t] = counts.get(t, 0) + 1
        receps = []
        for t in sorted(types | set(counts)):
            t = RENAME.get(t, t)
            if t in recep_types and t not in [r for r, _ in receps]:
                receps.append((t, counts.get(t, DEFAULT_COUNT.get(t, 1))))
        objects = sorted(t for t in types if t in placeable)
        lamps = [t for t in LAMPS if t in types]
        plans.append(
            {
                "id": n,
                "room": room_type(n),
                "receptacles": [[t.lower(), c] for t, c in sorted(receps)],
                "objects": [t.lower() for t in objects],
                "lamps": [t.lower() for t in lamps],
            }
        )
    plans.sort(key=lambda p: p["id"])
    low = lambda xs: sorted({x.lower() for x in xs})
    out = {
        "source": "alfworld 0.4.2 (MIT): gen/layouts/FloorPlan*-{objects,openable}.json, gen/constants.py",
        "unseen_floorplans": UNSEEN,
        "openable": low(openable),
        "cleanable": low(unsliced(actions["Cleanable"])),
        "heatable": low(unsliced(actions["Heatable"])),
        "coolable": low(unsliced(actions["Coolable"])),
        "toggleable": low(actions["Toggleable"]),
        "can_contain": {
            r.lower(): low(unsliced(objs))
            for r, objs in sorted(can_contain.items())
            if r in recep_types
        },
        "floorplans": plans,
    }
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
