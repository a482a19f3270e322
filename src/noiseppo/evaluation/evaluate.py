"""Paired evaluation of a noise policy against standard Gaussian noise (``noiseppo eval``).

For every step count, every prompt and every seed the frozen model renders three
images from the same standard noise ε (the project's seed rule): ``standard`` (ε),
``policy`` (μ(c) + σ(c) ⊙ ε, a policy sample) and ``policy_mu`` (μ(c), the policy's
mean). The reward and its numeric details (for Shapes: ``correct`` and ``partial``) are
compared pairwise. Confidence intervals come from a cluster bootstrap over prompts:
prompts are resampled with all their seeds, because images of one prompt are not
independent of each other.

``eval.json`` (the README documents the schema)::

    {"policy": ..., "backend": ..., "model": ..., "scheduler": ..., "reward": ...,
     "prompts": ..., "seeds": 8, "seed": 0, "guidance": 1.0, "bootstrap": 10000,
     "results": [{"steps": 4, "metric": "correct", "n": 1184,
                  "standard": 0.22, "policy": 0.35, "delta": 0.13, "ci95_low": 0.10, "ci95_high": 0.16,
                  "policy_mu": 0.30, "delta_mu": 0.08, "ci95_mu_low": 0.05, "ci95_mu_high": 0.11,
                  "own_minus_other": 0.05, "other_pairs": 1184, "ci95_other_low": 0.02, "ci95_other_high": 0.08,
                  "own_minus_mirror": 0.06, "mirror_pairs": 896, "ci95_mirror_low": 0.03,
                  "ci95_mirror_high": 0.09}, ...]}

``own_minus_other`` and ``own_minus_mirror`` are the prompt-specificity controls
(``noiseppo.evaluation.specificity``): the policy's images minus those rendered, with the true prompt and
the same seed, from the latents it makes for another prompt, or for the mirrored prompt (present
only where some prompts have a mirror).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noiseppo.backends.base import Backend
from noiseppo.evaluation.grid import Block, Cell, prompt_grid
from noiseppo.evaluation.paired import paired
from noiseppo.evaluation.sides import PairedSides
from noiseppo.evaluation.specificity import SIDES as SIDES_CONTROL
from noiseppo.evaluation.specificity import (
    Control,
    control_notes,
    controls,
    eval_row_controls,
    specificity_row,
    table_controls,
)
from noiseppo.images import to_pil
from noiseppo.policy import NoisePolicy
from noiseppo.rewards.base import Reward
from noiseppo.sampling.render import RenderSpec

SIDES = ("standard", "policy", "policy_mu")


@dataclass
class StepResult:
    steps: int
    scores: dict[str, dict[str, np.ndarray]]  # side -> metric -> per-image score
    prompt_index: np.ndarray
    images: dict[str, list[torch.Tensor]]  # side -> images (for the grid)
    prompts: list[str]
    controls: dict[str, Control] = field(default_factory=dict)  # "other", "mirror": noiseppo.evaluation.specificity


def evaluate_steps(
    backend: Backend, policy: NoisePolicy, reward: Reward, prompts: list[str], spec: RenderSpec, specific: bool = True
) -> StepResult:
    """Render and score the three sides at ``spec.steps``, paired by seed, and with ``specific``
    the prompt-specificity controls (the policy's latents made for other and mirrored prompts)."""
    paired_sides = PairedSides(backend, reward, prompts, spec)
    scores = {"standard": paired_sides.standard()}
    images = {"standard": [s.image for s in paired_sides.standard_samples]}
    for side, fn in (("policy", policy.noise_to_latents("sample")), ("policy_mu", policy.noise_to_latents("mean"))):
        scores[side], samples = paired_sides.side(fn)
        images[side] = [s.image for s in samples]
    sides = controls(backend, policy, reward, prompts, spec) if specific else {}
    texts = [s.prompt for s in paired_sides.standard_samples]
    return StepResult(spec.steps, scores, paired_sides.clusters, images, texts, sides)


def summarise(result: StepResult, resamples: int = 10_000) -> list[dict]:
    """One row per metric: means of each side, paired deltas and their bootstrap intervals."""
    rows = []
    # own - other, own - mirror for every metric at once (each bootstrap is seeded: the same figures per metric)
    spec = specificity_row(result.scores["policy"], result.prompt_index, result.controls, resamples)
    for metric, standard in result.scores["standard"].items():
        policy = result.scores["policy"][metric]
        mu = result.scores["policy_mu"][metric]
        finite = np.isfinite(standard) & np.isfinite(policy) & np.isfinite(mu)
        standard, policy, mu, clusters = standard[finite], policy[finite], mu[finite], result.prompt_index[finite]
        sampled, mean_only = paired(policy, standard, clusters, resamples), paired(mu, standard, clusters, resamples)
        rows.append(
            {
                "steps": result.steps,
                "metric": metric,
                "n": sampled.n,
                "standard": sampled.base,
                "policy": sampled.mean,
                "delta": sampled.delta,
                "ci95_low": sampled.low,
                "ci95_high": sampled.high,
                "policy_mu": mean_only.mean,
                "delta_mu": mean_only.delta,
                "ci95_mu_low": mean_only.low,
                "ci95_mu_high": mean_only.high,
            }
        )
        for side in result.controls:  # own - other, own - mirror, where the prompts have them
            key = f"own_minus_{side}_{metric}"
            if key in spec:
                rows[-1][f"own_minus_{side}"], rows[-1][f"{side}_pairs"] = spec[key], int(spec[f"{side}_pairs"])
                rows[-1][f"ci95_{side}_low"] = spec[f"{key}_ci95_low"]
                rows[-1][f"ci95_{side}_high"] = spec[f"{key}_ci95_high"]
    return rows


def side_by_side(result: StepResult, title: str, max_prompts: int = 16) -> Image.Image:
    """Standard and policy images of the same seed next to each other, first seed of each prompt,
    with the verifier's verdict (else the reward) under each."""
    firsts = [k for k in range(len(result.prompts)) if k == 0 or result.prompt_index[k] != result.prompt_index[k - 1]]
    blocks = []
    for k in firsts[:max_prompts]:
        cells = []
        for side in ("standard", "policy"):
            scores = result.scores[side]
            verdict = bool(scores["correct"][k]) if "correct" in scores else None
            score = float(scores.get("partial", scores["reward"])[k])
            cells.append(Cell(to_pil(result.images[side][k]), side, verdict, score))
        blocks.append(Block(result.prompts[k], cells))
    return prompt_grid(blocks, title)


def plot_gain(rows: list[dict], path: Path) -> None:
    """Gain (policy - standard) against the step count, one line per metric, 95% CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    for metric in dict.fromkeys(r["metric"] for r in rows):
        sel = [r for r in rows if r["metric"] == metric]
        steps = [r["steps"] for r in sel]
        delta = np.array([r["delta"] for r in sel])
        err = np.array([[r["delta"] - r["ci95_low"] for r in sel], [r["ci95_high"] - r["delta"] for r in sel]])
        ax.errorbar(steps, delta, yerr=err, marker="o", capsize=3, label=metric)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("policy - standard (95% CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(rows: list[dict]) -> str:
    """The table ``noiseppo eval`` prints: one line per step count and metric; own-other and
    own-mirror beside the gain (where either was measured), with the sentences that say what they mean."""
    head = f"{'steps':>5} {'metric':<9}{'n':>6}{'standard':>10}{'policy':>9}{'delta':>8}{'95% CI':>18}"
    head += f"{'policy_mu':>10}{'delta_mu':>9}"  # the policy's mean μ(c) alone, as in eval.json
    cells = table_controls([eval_row_controls(r) for r in rows])
    head += "".join(f"{f'own-{side} [95% CI]':>33}" for side in SIDES_CONTROL) if any(cells) else ""
    lines = [head]
    for r, controls_of_row in zip(rows, cells, strict=True):
        ci = f"[{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}]"
        line = (
            f"{r['steps']:>5} {r['metric']:<9}{r['n']:>6}{r['standard']:>10.3f}{r['policy']:>9.3f}"
            f"{r['delta']:>+8.3f}{ci:>18}{r['policy_mu']:>10.3f}{r['delta_mu']:>+9.3f}"
        )
        lines.append(line + "".join(f"{controls_of_row[side]:>33}" for side in SIDES_CONTROL if controls_of_row))
    return "\n".join(lines + (control_notes() if any(cells) else []))


def write_eval(folder: Path, header: dict, rows: list[dict], results: list[StepResult]) -> None:
    """eval.json, gain.png and one side-by-side grid per step count into ``folder``."""
    (folder / "eval.json").write_text(json.dumps({**header, "results": rows}, indent=1))
    plot_gain(
        [r for r in rows if r["metric"] != "reward" or len({x["metric"] for x in rows}) == 1], folder / "gain.png"
    )
    for result in results:
        title = f"{header['policy']} against standard noise, same seed, {result.steps} steps"
        side_by_side(result, title).save(folder / f"grid_steps{result.steps}.png")


def diversity(images: list[torch.Tensor], prompt_index: np.ndarray) -> float:
    """Within-prompt diversity: the mean RMS pixel distance between two images of the same prompt,
    averaged over the prompts with two or more images. A policy that collapses each prompt to one
    picture scores 0; compare it with standard noise's on the same (prompt, seed) pairs."""
    flat = torch.stack(images).flatten(1).double()
    per_prompt = []
    for p in np.unique(prompt_index):
        x = flat[torch.as_tensor(np.flatnonzero(prompt_index == p))]
        if len(x) < 2:
            continue
        d = torch.cdist(x, x) / math.sqrt(x.shape[1])
        per_prompt.append(float(d.sum() / (len(x) * (len(x) - 1))))
    return float(np.mean(per_prompt)) if per_prompt else float("nan")
