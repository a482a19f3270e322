"""Does scoring overlap rendering? ``train_over_sampling`` with a reward as slow as the model.

    python benchmarks/slow_reward.py [--render-batch 8] [--repeats 5] [--threads 1] [--steps 4]

A real reward (a CLIP model, HPSv2 behind ``noiseppo reward-server``, a VLM judge) can take
as long as rendering. This stands one in: ``score`` below sleeps for a calibrated time per
call, then answers with the Shapes verifier. The sleep releases the GIL, as a model call on a
GPU or a wait on a socket does. Its length is the median time the frozen model takes to
render one chunk of ``--render-batch`` images, measured first.

For each reward the ratio is ``train_over_sampling`` as ``benchmarks/overhead.py`` measures
it: the median time to render one training batch with standard noise, in the same chunks,
over the median time of a whole PPO iteration. Four rewards, each with overlap off and on:

* ``slow_reward``: the sleeping reward in process (``benchmarks/slow_reward.py:score``);
* ``http_reward``: the same reward behind ``noiseppo reward-server`` on loopback, so the
  images travel as PNGs both ways;
* ``shapes``: the Shapes default, a near-free reward, at the preset's own render_batch (one
  chunk: nothing to overlap), to check that the overlap costs it nothing.

Every trainer and the sampling clocks take turns within each repeat, so a machine that
slows down mid-run slows every side. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, so that --help answers before torch loads
    import torch

    from noiseppo.training.trainer import Trainer

SLEEP_ENV = "NOISEPPO_SLOW_REWARD_S"
"""Seconds ``score`` sleeps per call."""

_shapes = None


def score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """The Shapes verifier's partial score, after sleeping ``$NOISEPPO_SLOW_REWARD_S`` seconds."""
    global _shapes
    if _shapes is None:
        from noiseppo.rewards import get_reward

        _shapes = get_reward("shapes")
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
    return _shapes(images, prompts)


def main() -> None:
    from overhead import sampling_clock, training_clock  # this folder's sibling

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="shapes")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--render-batch", type=int, default=8, help="images per chunk for the slow rewards")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.configs.presets import resolve
    from noiseppo.training.trainer import Trainer

    me = f"{Path(__file__).resolve()}:score"
    common = [f"steps={args.steps}", "eval_prompts=", f"threads={args.threads}", "device=cpu"]

    def trainer(reward: str, overlap: bool, chunked: bool = True) -> Trainer:
        chunk = [f"render_batch={args.render_batch}"] if chunked else []
        overrides = [*common, *chunk, f"reward={reward}", f"overlap_scoring={str(overlap).lower()}"]
        return Trainer(resolve(args.preset, overrides=overrides))

    # Calibrate: the reward sleeps as long as the model takes to render one chunk.
    probe = trainer("shapes", overlap=False)
    chunks = probe.config.prompts_per_iteration * probe.config.samples_per_prompt // args.render_batch
    render_batch_time = sampling_clock(probe)
    render_batch_time(), render_batch_time()  # warm-up: the first calls are slower
    sleep_s = statistics.median(render_batch_time() for _ in range(5)) / chunks
    os.environ[SLEEP_ENV] = f"{sleep_s:.6f}"

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    noiseppo = Path(sys.executable).parent / "noiseppo"
    server = subprocess.Popen(
        [str(noiseppo), "reward-server", "--reward", me, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = server.stdout.readline().split(" at ")[1].split()[0] + "score"
        rewards = (("slow_reward", me, True), ("http_reward", url, True), ("shapes", "shapes", False))
        sides = {
            f"{name}_overlap_{'on' if overlap else 'off'}": trainer(reward, overlap, chunked)
            for name, reward, chunked in rewards
            for overlap in (False, True)
        }
        clocks = {"sampling_chunked": sampling_clock(probe)}
        clocks["sampling_one_pass"] = sampling_clock(sides["shapes_overlap_off"])
        clocks.update({name: training_clock(t) for name, t in sides.items()})
        for clock in clocks.values():  # warm-up: first calls pay for allocation (and the server's import)
            clock()
        times: dict[str, list[float]] = {name: [] for name in clocks}
        for _ in range(args.repeats):
            for name, clock in clocks.items():
                times[name].append(clock())
    finally:
        server.terminate()
        server.wait(timeout=30)

    med = {name: statistics.median(values) for name, values in times.items()}
    result: dict[str, float | int | str] = {
        "steps": args.steps,
        "batch": probe.config.prompts_per_iteration * probe.config.samples_per_prompt,
        "render_batch": args.render_batch,
        "chunks_per_iteration": chunks,
        "reward_sleep_s": round(sleep_s, 4),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "sampling_chunked_s": round(med["sampling_chunked"], 3),
        "sampling_one_pass_s": round(med["sampling_one_pass"], 3),
    }
    # How well the calibration held: the reward's time per chunk over the model's, in this run.
    result["reward_over_render_per_chunk"] = round(sleep_s / (med["sampling_chunked"] / chunks), 3)
    for name in sides:
        baseline = med["sampling_one_pass" if name.startswith("shapes") else "sampling_chunked"]
        result[name] = round(baseline / med[name], 3)
        result[f"{name}_iteration_s"] = round(med[name], 3)
    for name in sides:
        print(f"{name:<24} train/sampling {result[name]:.3f}   ({med[name]:.2f} s per iteration)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
