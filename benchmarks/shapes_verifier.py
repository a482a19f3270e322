"""Accuracy, robustness and speed of the Shapes verifier on freshly rendered scenes.

    python benchmarks/shapes_verifier.py [--n 2000] [--seed 0]

Scenes: the template is drawn uniformly (so counting and relations get their share),
then a prompt of that template uniformly, then a scene seed. Reported:

* matched: the fraction of (image, own prompt) pairs marked correct, on clean renders,
  with Gaussian pixel noise (sigma = 8/255), with a 3x3 box blur, and with both;
* mismatched: the fraction of (image, other prompt) pairs marked correct, where the
  other prompt is (a) another scene's prompt and (b) a *hard negative*, the own prompt
  with one word changed (colour, shape, count or relation). Pairs whose ground-truth
  scene satisfies the other prompt are not mismatched and are left out;
* speed: images per second of ``verify`` in batches of 256 on one pinned core.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import os

# One core: pin the process and keep BLAS single-threaded before numpy loads.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402

from noiseppo.shapes.grammar import COLOURS, RELATIONS, SHAPES, ShapesPrompt, all_prompts  # noqa: E402


def draw_prompts(n: int, rng: np.random.Generator) -> list[ShapesPrompt]:
    by_template: dict[str, list[ShapesPrompt]] = {}
    for p in all_prompts():
        by_template.setdefault(p.template, []).append(p)
    templates = sorted(by_template)
    out = []
    for _ in range(n):
        pool = by_template[templates[rng.integers(len(templates))]]
        out.append(pool[rng.integers(len(pool))])
    return out


def hard_negative(p: ShapesPrompt, rng: np.random.Generator) -> ShapesPrompt:
    """``p`` with one word changed: a colour, a shape, the count or the relation."""
    while True:
        groups = list(p.groups)
        relation = p.relation
        kind = rng.choice(["colour", "shape", "count" if len(groups) == 1 else "relation"])
        i = int(rng.integers(len(groups)))
        if kind == "colour":
            groups[i] = dataclasses.replace(groups[i], colour=str(rng.choice(list(COLOURS))))
        elif kind == "shape":
            groups[i] = dataclasses.replace(groups[i], shape=str(rng.choice(SHAPES)))
        elif kind == "count":
            groups[i] = dataclasses.replace(groups[i], count=int(rng.integers(1, 4)))
        elif relation is not None:
            relation = str(rng.choice(RELATIONS))
        else:
            continue
        q = ShapesPrompt(tuple(groups), relation)
        if q != p and not (len(groups) == 2 and groups[0] == groups[1]):
            return q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of scenes")
    ap.add_argument("--seed", type=int, default=0, help="seed for prompts, scenes and noise")
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.shapes.render import degrade, render_scene
    from noiseppo.shapes.scene import check
    from noiseppo.shapes.verifier import verify

    torch.set_num_threads(1)

    rng = np.random.default_rng(args.seed)
    prompts = draw_prompts(args.n, rng)
    scenes = [render_scene(p, int(rng.integers(2**63 - 1))) for p in prompts]
    images = np.stack([np.asarray(im) for im, _ in scenes])
    truth = [objs for _, objs in scenes]
    texts = [p.text for p in prompts]

    figures: dict[str, float | int] = {"n": args.n}
    print(f"{'condition':<22}{'correct':>10}  most frequent failures")
    for name, noise, blur in [("clean", 0, 0), ("noise", 1, 0), ("blur", 0, 1), ("noise+blur", 1, 1)]:
        verdicts = verify(degrade(images, bool(noise), bool(blur), args.seed), texts)
        rate = float(np.mean([v.correct for v in verdicts]))
        fails = Counter(
            f"{p.template}/{k.split(':')[0]}"
            for p, v in zip(prompts, verdicts, strict=True)
            for k, ok in v.constraints.items()
            if not ok
        )
        print(f"matched {name:<14}{rate:>10.4f}  {dict(fails.most_common(4))}")
        figures[f"matched_{name.replace('+', '_')}"] = rate

    for name, others in [
        ("other_scene", [prompts[(i + 1) % args.n] for i in range(args.n)]),
        ("hard_negative", [hard_negative(p, rng) for p in prompts]),
    ]:
        keep = [i for i in range(args.n) if not check(others[i], truth[i]).correct]
        verdicts = verify(images[keep], [others[i].text for i in keep])
        rate = float(np.mean([v.correct for v in verdicts]))
        excluded = args.n - len(keep)
        print(f"mismatched {name:<14}{rate:>7.4f}  ({len(keep)} pairs, {excluded} excluded as truly satisfied)")
        figures[f"mismatched_{name}"] = rate
        figures[f"mismatched_{name}_pairs"] = len(keep)

    batch = 256
    verify(images[:batch], texts[:batch])  # warm-up
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        for s in range(0, args.n, batch):
            verify(images[s : s + batch], texts[s : s + batch])
        timings.append(args.n / (time.perf_counter() - start))
    figures["images_per_s_one_core"] = round(float(np.median(timings)), 1)
    print(f"speed: {figures['images_per_s_one_core']} images/s on one core (batches of {batch}, median of 3)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
