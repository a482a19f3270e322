"""Paired comparisons of per-image scores on the same (prompt, seed) images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Paired:
    """One side against another on the same images (image k of each from the same prompt and
    seed): the images both scored, each side's mean, and the paired difference's mean with its
    95% cluster-bootstrap interval over prompts. Every table of the package is built from these."""

    n: int
    mean: float
    base: float
    delta: float
    low: float
    high: float


def paired(after: np.ndarray, before: np.ndarray, clusters: np.ndarray, resamples: int = 2000) -> Paired:
    """``after`` against ``before``, per image, on the images where both are finite (a NaN reward
    drops its pair); ``clusters[k]`` is image k's prompt, resampled as a whole."""
    finite = np.isfinite(after) & np.isfinite(before)
    delta = after[finite] - before[finite]
    low, high = paired_bootstrap(delta, clusters[finite], resamples)
    return Paired(
        int(finite.sum()), float(after[finite].mean()), float(before[finite].mean()), float(delta.mean()), low, high
    )


def paired_row(
    standard: dict[str, np.ndarray], after: dict[str, np.ndarray], clusters: np.ndarray, resamples: int = 2000
) -> dict[str, float]:
    """For each metric: the mean after, the standard mean, and the paired Δ's 95% cluster-bootstrap
    interval over prompts (``eval_*`` keys, as ``noiseppo train`` logs its held-out rows)."""
    row: dict[str, float] = {"eval_pairs": float(len(clusters))}
    for key, values in after.items():
        p = paired(values, standard[key], clusters, resamples)
        row[f"eval_{key}"], row[f"eval_standard_{key}"] = p.mean, p.base
        row[f"eval_delta_{key}_ci95_low"], row[f"eval_delta_{key}_ci95_high"] = p.low, p.high
    return row


def group_rows(
    standard: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    clusters: np.ndarray,
    groups: list[str],
    resamples: int = 2000,
) -> dict[str, float]:
    """``paired_row``'s Δ and interval within each group of prompts (``groups[i]``: prompt i's, e.g.
    its Shapes template), as ``eval_group_{group}_pairs`` and ``eval_group_{group}_delta_{metric}``
    (with ``_ci95_low`` and ``_ci95_high``): where the gain comes from."""
    row: dict[str, float] = {}
    of_image = np.array([groups[i] for i in clusters])
    for group in sorted(set(groups)):
        mine = of_image == group
        row[f"eval_group_{group}_pairs"] = float(mine.sum())
        for key, values in after.items():
            p = paired(values[mine], standard[key][mine], clusters[mine], resamples)
            name = f"eval_group_{group}_delta_{key}"
            row[name], row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = p.delta, p.low, p.high
    return row


def paired_bootstrap(
    delta: np.ndarray, clusters: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of mean(delta), resampling whole clusters (prompts) with replacement."""
    ids, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=delta, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=(resamples, len(ids)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
