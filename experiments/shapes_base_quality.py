"""Quality of the embedded Shapes model against the number of sampling steps.

    python experiments/shapes_base_quality.py [--model DIR] [--steps 1,2,4,8,16,32,50]
        [--seeds 4] [--guidance 3] [--scheduler ddim] [--prompts shapes-test]

Every prompt gets ``--seeds`` samples with the project's seed rule (base seed 0), so the
same noise is used at every step count. The verifier scores each image; the table gives
the correct-rate with a 95% Wilson interval and the mean partial score. Several
guidance scales or schedulers may be given (comma-separated) to sweep them. The last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped weights)")
    ap.add_argument("--steps", default="1,2,4,8,16,32,50", help="comma-separated step counts")
    ap.add_argument("--seeds", type=int, default=4, help="samples per prompt")
    ap.add_argument("--guidance", default="3", help="comma-separated guidance scales")
    ap.add_argument("--scheduler", default="ddim", help="comma-separated schedulers (ddim, euler, dpm)")
    ap.add_argument("--prompts", default="shapes-test", help="prompt set or file")
    ap.add_argument("--batch", type=int, default=128, help="images per forward pass")
    args = ap.parse_args()
    from noiseppo.backends import get_backend  # after the arguments: --help answers at once
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.render import RenderSpec, sample
    from noiseppo.shapes.verifier import verify

    prompts = load_prompts(args.prompts)
    results = []
    print(f"{'scheduler':<10}{'guidance':>9}{'steps':>6}{'n':>6}{'correct':>9}{'95% CI':>16}{'partial':>9}{'s':>7}")
    for scheduler in args.scheduler.split(","):
        backend = get_backend("shapes", args.model, scheduler)
        for guidance in (float(g) for g in args.guidance.split(",")):
            for steps in (int(s) for s in args.steps.split(",")):
                start = time.time()
                samples = sample(backend, prompts, RenderSpec(steps, guidance, args.seeds, 0, args.batch))
                verdicts = verify(np.stack([s.image.numpy() for s in samples]), [s.prompt for s in samples])
                correct = sum(v.correct for v in verdicts)
                n = len(verdicts)
                low, high = wilson(correct, n)
                partial = float(np.mean([v.partial for v in verdicts]))
                row = {
                    "scheduler": scheduler,
                    "guidance": guidance,
                    "steps": steps,
                    "n": n,
                    "correct": correct / n,
                    "ci95": [round(low, 4), round(high, 4)],
                    "partial": round(partial, 4),
                }
                results.append(row)
                ci = f"[{low:.3f}, {high:.3f}]"
                took = time.time() - start
                rate = correct / n
                print(f"{scheduler:<10}{guidance:>9.1f}{steps:>6}{n:>6}{rate:>9.3f}{ci:>16}{partial:>9.3f}{took:>7.0f}")
    print(json.dumps({"prompts": args.prompts, "seeds_per_prompt": args.seeds, "results": results}))


if __name__ == "__main__":
    main()
