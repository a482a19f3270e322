"""Soak: a long small Shapes run, with the process's RSS sampled after every iteration.

    python benchmarks/soak.py [--iterations 300] [--bound-mb 50] [--out DIR] [KEY=VALUE ...]

Runs the real ``noiseppo.training.trainer.train`` loop (rollout, update, metrics.jsonl, TensorBoard,
a checkpoint every iteration) on the ``tiny`` preset without its held-out pass, overrides
as for ``noiseppo train``. After iteration ``--warmup`` the allocator and the caches have
settled; from there RSS must stay under that iteration's RSS plus ``--bound-mb``. Reports
the RSS at start-up, after the warm-up and at the end, its peak, and the least-squares slope
after the warm-up in MB per 100 iterations; writes every sample to DIR/rss.json. The last
line is one JSON object; the exit status is 1 if the bound is broken.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import psutil


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20, help="iterations before the bound applies")
    ap.add_argument("--bound-mb", type=float, default=50.0)
    ap.add_argument("--out", help="run folder (default: a new temporary one)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args()
    from noiseppo.configs.presets import (
        resolve,  # after the arguments: --help answers at once; the start RSS is taken after them
    )
    from noiseppo.training.trainer import Trainer, train

    process = psutil.Process()

    def mb() -> float:
        return process.memory_info().rss / 2**20

    samples = [(0, mb())]
    step = Trainer.step

    def sampled_step(self: Trainer) -> dict[str, float]:  # the real step, then one sample
        row = step(self)
        samples.append((self.iteration, mb()))
        return row

    Trainer.step = sampled_step  # type: ignore[method-assign]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "run"
    overrides = [f"iterations={args.iterations}", "eval_prompts=", "threads=1", *args.overrides]
    train(resolve("tiny", overrides=overrides), out, quiet=True)

    iterations, rss = np.array(samples).T
    settled = rss[args.warmup]
    after = iterations >= args.warmup
    slope = float(np.polyfit(iterations[after], rss[after], 1)[0]) * 100
    (out / "rss.json").write_text(json.dumps([{"iteration": int(i), "rss_mb": round(r, 2)} for i, r in samples]))
    result = {
        "iterations": args.iterations,
        "rss_start_mb": round(float(rss[0]), 1),
        "rss_after_warmup_mb": round(float(settled), 1),
        "rss_end_mb": round(float(rss[-1]), 1),
        "rss_peak_mb": round(float(rss.max()), 1),
        "growth_after_warmup_mb": round(float(rss[after].max() - settled), 1),
        "slope_mb_per_100_iterations": round(slope, 2),
        "bound_mb": args.bound_mb,
        "within_bound": bool(rss[after].max() <= settled + args.bound_mb),
        "every_50": [round(float(r), 1) for i, r in samples if i % 50 == 0],
        "samples": str(out / "rss.json"),
    }
    print(json.dumps(result))
    raise SystemExit(0 if result["within_bound"] else 1)


if __name__ == "__main__":
    main()
