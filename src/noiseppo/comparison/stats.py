"""The figures of ``noiseppo compare``: each row's mean and its paired difference to standard (95%
cluster-bootstrap intervals over prompts, ``noiseppo.evaluation.paired``), the trained methods'
held-out curves, and the summaries across rows (against best-of-N, against DDPO)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from noiseppo.evaluation.paired import paired, paired_bootstrap


def mean_ci(values: np.ndarray, clusters: np.ndarray, resamples: int) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% cluster-bootstrap interval over prompts."""
    low, high = paired_bootstrap(values, clusters, resamples)
    return float(values.mean()), low, high


def score_row(metrics: dict, standard: dict, clusters: np.ndarray, resamples: int, metric: str) -> dict:
    """One method's figures: ``metric``'s mean and interval, its paired difference to ``standard``
    image by image (``delta``), and the mean of every other metric of ``metrics``."""
    values, base = metrics[metric], standard[metric]
    finite = np.isfinite(values) & np.isfinite(base)
    mean, low, high = mean_ci(values[finite], clusters[finite], resamples)
    p = paired(values, base, clusters, resamples)
    row = {"n": p.n, metric: mean, f"{metric}_ci95_low": low, f"{metric}_ci95_high": high}
    row.update(delta=p.delta, delta_ci95_low=p.low, delta_ci95_high=p.high)
    row.update({k: float(np.nanmean(v)) for k, v in metrics.items() if k != metric})
    return row


def noise_ppo_curve(run: Path, metric: str = "correct") -> list[dict]:
    """(iteration, training wall time so far, held-out ``metric``) at each of the run's evaluations."""
    import yaml

    batch_size = yaml.safe_load((run / "config.yaml").read_text())
    batch = batch_size["prompts_per_iteration"] * batch_size["samples_per_prompt"]
    curve, elapsed = [], 0.0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "samples_per_s" in row:
            elapsed += batch / row["samples_per_s"]
        if f"eval_{metric}" in row:
            curve.append(
                {"iteration": row["iteration"], "train_time_s": elapsed, f"eval_{metric}": row[f"eval_{metric}"]}
            )
    return curve


def against_best_of_n(
    rows: dict[str, dict], per_image: dict[str, dict], clusters: np.ndarray, resamples: int, metric: str = "correct"
) -> dict:
    """Each policy at 1x inference (``noise-ppo``, ``policy:NAME``) against best-of-N: the paired
    difference to each N, the largest N whose correct-rate the policy reaches, and the Ns whose
    paired interval holds 0."""
    out: dict = {}
    best = sorted((n for n in rows if re.fullmatch(r"best-of-\d+", n)), key=lambda n: int(n.split("-")[-1]))
    for policy in (n for n in rows if n == "noise-ppo" or n.startswith("policy:")):
        ours = per_image[policy][metric]
        entry: dict = {metric: rows[policy][metric], "against": [], "matches_best_of_n": None}
        for name in best:
            p = paired(ours, per_image[name][metric], clusters, resamples)
            entry["against"].append(
                {"method": name, metric: rows[name][metric], "delta": p.delta, "ci95_low": p.low, "ci95_high": p.high}
            )
            if p.delta >= 0:
                entry["matches_best_of_n"] = int(name.split("-")[-1])
        entry["indistinguishable_from"] = [
            a["method"] for a in entry["against"] if a["ci95_low"] <= 0 <= a["ci95_high"]
        ]
        out[policy] = entry
    return out


def against_ddpo(curves: dict[str, list[dict]], rows: dict[str, dict], metric: str = "correct") -> dict:
    """Noise PPO against DDPO: the wall-time and peak-memory ratios at which Noise PPO first
    reaches DDPO's final held-out correct-rate, or where each ends."""
    if "noise-ppo" not in curves or "ddpo" not in curves or not curves["ddpo"]:
        return {}
    ddpo_name = next(n for n in rows if n.startswith("ddpo"))
    final = curves["ddpo"][-1]
    out = {
        "ddpo_final": final,
        "noise_ppo_final": curves["noise-ppo"][-1],
        "peak_rss_ratio_noise_ppo_over_ddpo": rows["noise-ppo"]["peak_rss_mb"] / rows[ddpo_name]["peak_rss_mb"],
        "peak_rss_above_start_ratio": rows["noise-ppo"]["rss_rise_mb"] / max(rows[ddpo_name]["rss_rise_mb"], 1e-9),
    }
    key = f"eval_{metric}"
    reached = next((c for c in curves["noise-ppo"] if c[key] >= final[key]), None)
    out["noise_ppo_reaches_ddpo_final"] = reached
    if reached is not None:
        out["wall_time_ratio_noise_ppo_over_ddpo"] = reached["train_time_s"] / max(final["train_time_s"], 1e-9)
    out["wall_time_ratio_at_ends"] = curves["noise-ppo"][-1]["train_time_s"] / max(final["train_time_s"], 1e-9)
    return out
