"""Start-up time of the ``noiseppo`` command line, against a bare Python interpreter, in one run.

    python benchmarks/startup.py [--repeats 7]

Times, as subprocesses, ``python -c pass`` (the floor any console script pays),
``noiseppo --help``, ``noiseppo train --help``, ``noiseppo list presets`` and ``noiseppo list
policies``, four mistakes ``noiseppo train`` refuses (a mistyped preset, key and reward, a
missing prompt file), and, for scale, ``python -c "import torch"``. Each command runs ``--repeats``
times, interleaved, after one warm-up round (the file cache); the median wall time is
reported, and each command's ratio to ``python -c pass`` measured in the same rounds, which is
the figure to compare across machines. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

NOISEPPO = str(Path(sys.executable).parent / "noiseppo")
COMMANDS = {
    "python_pass": [sys.executable, "-c", "pass"],
    "help": [NOISEPPO, "--help"],
    "train_help": [NOISEPPO, "train", "--help"],
    "list_presets": [NOISEPPO, "list", "presets"],
    "list_policies": [NOISEPPO, "list", "policies"],
    # Mistakes answered before torch loads (the one-line refusal, exit 2): a preset, a key, a
    # reward name and a prompt file.
    "typo_preset": [NOISEPPO, "train", "--preset", "shape", "--out", "/nonexistent/run"],
    "typo_key": [NOISEPPO, "train", "lerning_rate=1", "--out", "/nonexistent/run"],
    "typo_reward": [NOISEPPO, "train", "--reward", "clip-score", "--out", "/nonexistent/run"],
    "missing_prompts": [NOISEPPO, "train", "--prompts", "/nonexistent/p.txt", "--out", "/nonexistent/run"],
    "import_torch": [sys.executable, "-c", "import torch"],
}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if done.returncode != (2 if "--out" in command else 0):  # the mistakes exit 2, the rest 0
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_ in range(args.repeats + 1):
        for name, command in COMMANDS.items():
            seconds = wall_time(command)
            if round_:  # round 0 warms the file cache
                times[name].append(seconds)
    floor = statistics.median(times["python_pass"])
    figures: dict[str, float] = {"repeats": args.repeats}
    for name, values in times.items():
        median = statistics.median(values)
        figures[f"{name}_s"] = round(median, 3)
        if name != "python_pass":
            figures[f"{name}_ratio"] = round(median / floor, 1)
        print(f"{name:<14}{median * 1000:8.0f} ms  ({median / floor:.1f} x python -c pass)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
