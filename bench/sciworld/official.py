"""Steps per second through the official ScienceWorld Python API (py4j), replaying the gold
path of a task, for comparison with our Rust path (crates/env/tests/sciworld_bench.rs).

Prints one JSON line per measurement."""
import json
import sys
import time

from scienceworld import ScienceWorldEnv

task = sys.argv[1] if len(sys.argv) > 1 else "boil"
variation = int(sys.argv[2]) if len(sys.argv) > 2 else 0
episodes = int(sys.argv[3]) if len(sys.argv) > 3 else 5

env = ScienceWorldEnv("", envStepLimit=10_000)
env.load(task, variation, "easy", generateGoldPath=True)
gold = env.get_gold_action_sequence()

# env.step: the public API, which also gathers look/inventory/valid actions into `infos`.
# server.step (+ score, completed): the same simulator work our Rust path asks for.
for label in ["api_step", "raw_step"]:
    steps, elapsed, final = 0, 0.0, None
    for _ in range(episodes):
        env.load(task, variation, "easy", generateGoldPath=False)
        env.reset()
        for action in gold:
            t = time.perf_counter()
            if label == "api_step":
                _, _, done, info = env.step(action)
                final = info["score"]
            else:
                env.server.step(action)
                final = round(100 * env.server.getScore())
                done = env.server.getCompleted()
            elapsed += time.perf_counter() - t
            steps += 1
            # Our episodes end when the simulator declares the task done; so do these.
            if done:
                break
    print(json.dumps({"path": f"python:{label}", "task": task, "variation": variation,
                      "steps": steps, "seconds": round(elapsed, 3),
                      "steps_per_s": round(steps / elapsed, 1), "final_score": final}))
env.close()
