"""How often the noise-share interval of ``noiseppo golden`` covers the truth (docs/golden_noise.md).

    python experiments/golden_bootstrap_coverage.py [--trials 100]

Synthetic correct/incorrect matrices shaped like the measurement (148 prompts x 64 noises):
a prompt effect, a noise effect of known size (0: no golden noise) and Bernoulli noise. For each
trial, a 95% percentile interval of the noise component's share, from resampling the noises only
(what ``noiseppo.analysis.golden.decompose`` does) and from resampling prompts and noises (the two-way
bootstrap). Reports how often each interval holds the true share of the population model,
estimated on one large draw. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from noiseppo.analysis.golden import variance_components


def draw(rng: np.random.Generator, prompts: int, noises: int, effect: float) -> np.ndarray:
    """Bernoulli(clip(prompt logit-ish base + noise effect)) correct/incorrect matrix."""
    base = rng.uniform(0.05, 0.6, prompts)[:, None]
    shift = rng.normal(0, effect, noises)[None, :]
    return (rng.random((prompts, noises)) < np.clip(base + shift, 0, 1)).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for effect in (0.0, 0.03, 0.08):
        truth = np.mean([variance_components(draw(rng, 2000, 2000, effect))["noise"] for _ in range(2)])
        hits = {"noises": 0, "both": 0}
        for _ in range(args.trials):
            y = draw(rng, 148, 64, effect)
            for mode in hits:
                shares = []
                for _ in range(args.resamples):
                    rows_ = rng.integers(0, 148, 148) if mode == "both" else np.arange(148)
                    shares.append(variance_components(y[rows_][:, rng.integers(0, 64, 64)])["noise"])
                low, high = np.percentile(shares, [2.5, 97.5])
                hits[mode] += low <= truth <= high
        row = {"effect_sd": effect, "true_noise_share": round(float(truth), 4)}
        row.update({f"coverage_{mode}": hits[mode] / args.trials for mode in hits})
        rows.append(row)
        print(f"noise effect sd {effect}: true share {truth:.4f}, coverage noises-only "
              f"{row['coverage_noises']:.2f}, two-way {row['coverage_both']:.2f}")  # fmt: skip
    print(json.dumps({"trials": args.trials, "resamples": args.resamples, "rows": rows}))


if __name__ == "__main__":
    main()
