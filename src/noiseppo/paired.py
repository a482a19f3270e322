"""Paired comparisons of per-image scores on the same (prompt, seed) images."""

from __future__ import annotations

import numpy as np

from noiseppo.evaluate import paired_bootstrap


def paired_row(
    standard: dict[str, np.ndarray], after: dict[str, np.ndarray], clusters: np.ndarray, resamples: int = 2000
) -> dict[str, float]:
    """For each metric: the mean after, the standard mean, and the paired Δ's 95% cluster-bootstrap
    interval over prompts (``eval_*`` keys, as ``noiseppo train`` logs its held-out rows)."""
    row: dict[str, float] = {"eval_pairs": float(len(clusters))}
    for key, values in after.items():
        before = standard[key]
        finite = np.isfinite(before) & np.isfinite(values)
        row[f"eval_{key}"] = float(np.mean(values[finite]))
        row[f"eval_standard_{key}"] = float(np.mean(before[finite]))
        low, high = paired_bootstrap(values[finite] - before[finite], clusters[finite], resamples)
        row[f"eval_delta_{key}_ci95_low"], row[f"eval_delta_{key}_ci95_high"] = low, high
    return row
