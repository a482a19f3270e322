"""Prompt-specificity: does a policy's latents help their own prompt more than another's would?

A prompt-conditioned policy is worth its prompt encoder only if it does. Two paired controls
answer that, on the same (prompt, seed) images as the gain over standard noise:

- **own - other.** Each prompt is rendered (with its true prompt) from the latents the policy
  makes, from the same standard noise, for *another* prompt of the set: a derangement drawn
  once from ``other_seed``. A policy that ignores its prompt scores exactly 0.
- **own - mirror.** The same, from the latents made for the prompt's mirror (its spatial
  relation reversed, ``noiseppo.prompts.mirror_prompt``), on the prompts that have one: the same
  objects, the opposite layout.

Both work for any backend and reward; the mirror needs prompts with one spatial relation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noiseppo.backends.base import Backend
from noiseppo.evaluation.paired import paired
from noiseppo.policy import Mode, NoisePolicy
from noiseppo.prompts import mirror_prompt
from noiseppo.rewards.base import Reward
from noiseppo.sampling.render import LatentsFn, RenderSpec, encode_distinct
from noiseppo.sampling.render_and_score import score_side

OTHER_SEED = 0
"""Seed of the derangement that gives each prompt its "other" prompt."""


def other_prompts(prompts: list[str], seed: int = OTHER_SEED) -> list[str]:
    """For each prompt, another prompt of the list (never itself): a random derangement fixed by
    ``seed``. Needs at least two distinct prompts."""
    if len(set(prompts)) < 2:
        return []
    rng = np.random.default_rng(seed)
    while True:  # a random permutation is a derangement with probability ~1/e
        order = rng.permutation(len(prompts))
        if all(prompts[i] != prompts[j] for i, j in enumerate(order)):
            return [prompts[j] for j in order]


def partner_latents(policy: NoisePolicy, backend: Backend, partners: dict[str, str], mode: Mode) -> LatentsFn:
    """A ``LatentsFn`` that gives each row the policy's latents for its partner prompt (by the
    row's canonical text, as ``backend.encode`` returns it), from the row's own standard noise."""
    fn = policy.noise_to_latents(mode)

    def latents(conditioning, eps):
        return fn(encode_distinct(backend, [partners[p] for p in conditioning.prompts]), eps)

    return latents


@dataclass
class Control:
    """One control side: per-image metrics on the rows ``rows`` of the own side's arrays."""

    metrics: dict[str, np.ndarray]
    rows: np.ndarray  # indices into the own side's per-image arrays, same (prompt, seed) order


def controls(
    backend: Backend,
    policy: NoisePolicy,
    reward: Reward,
    prompts: list[str],
    spec: RenderSpec,
    mode: Mode = "sample",
    other_seed: int = OTHER_SEED,
    progress: str | None = None,
) -> dict[str, Control]:
    """Render and score the "other" and "mirror" sides (each present when the prompts allow it),
    paired with ``score_side(backend, reward, prompts, spec, ...)`` of the same arguments."""
    canonical = backend.encode(prompts).prompts
    out: dict[str, Control] = {}
    others = other_prompts(prompts, other_seed)
    if others:
        fn = partner_latents(policy, backend, dict(zip(canonical, others, strict=True)), mode)
        label = None if progress is None else f"{progress}: other prompts' latents"
        metrics, _ = score_side(backend, reward, prompts, spec, fn, progress=label)
        out["other"] = Control(metrics, np.arange(len(prompts) * spec.seeds))
    mirrors = {i: m for i, p in enumerate(prompts) if (m := mirror_prompt(p)) is not None}
    ids = list(mirrors)
    if ids:
        partners = {canonical[i]: mirrors[i] for i in ids}
        backend.encode(list(partners.values()))  # a mirror outside the backend's language fails here, clearly
        fn = partner_latents(policy, backend, partners, mode)
        subset = [prompts[i] for i in ids]
        label = None if progress is None else f"{progress}: mirrored prompts' latents"
        metrics, _ = score_side(backend, reward, subset, spec, fn, ids, label)
        rows = (np.asarray(ids)[:, None] * spec.seeds + np.arange(spec.seeds)[None]).reshape(-1)
        out["mirror"] = Control(metrics, rows)
    return out


def specificity_row(
    own: dict[str, np.ndarray], clusters: np.ndarray, sides: dict[str, Control], resamples: int = 2000
) -> dict[str, float]:
    """``own_minus_{side}_{metric}`` with its 95% cluster-bootstrap interval (``..._ci95_low/high``)
    and ``{side}_pairs``, for each control side: the own side's images minus the control's, paired."""
    row: dict[str, float] = {}
    for side, control in sides.items():
        row[f"{side}_pairs"] = float(len(control.rows))
        for key, values in control.metrics.items():
            p = paired(own[key][control.rows], values, clusters[control.rows], resamples)
            name = f"own_minus_{side}_{key}"
            row[name], row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = p.delta, p.low, p.high
    return row
