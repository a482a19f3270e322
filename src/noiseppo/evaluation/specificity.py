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
from typing import TYPE_CHECKING

import numpy as np

from noiseppo.evaluation.paired import paired
from noiseppo.prompts import mirror_prompt

if TYPE_CHECKING:  # torch and diffusers: the tables' texts below are read by pages that need neither
    from noiseppo.backends.base import Backend
    from noiseppo.policy import Mode, NoisePolicy
    from noiseppo.rewards.base import Reward
    from noiseppo.sampling.render import LatentsFn, RenderSpec

OTHER_SEED = 0
"""Seed of the derangement that gives each prompt its "other" prompt."""
SIDES = ("other", "mirror")
MEANINGS = {
    "other": "the gain with the latents made for this prompt minus the gain with the latents made for another "
    "prompt, same seeds",
    "mirror": 'the same with the latents made for the mirrored relation ("left of" <-> "right of"); near 0 means '
    "the policy gives every prompt the same shift",
}
"""One plain sentence per control, under every table that shows it (eval, train, the report pages)."""
ABSENT = {"other": "fewer than two distinct prompts", "mirror": "no mirrored prompts in this set"}
"""What a control's cell says where the prompts do not allow it (while the other control was measured)."""
IGNORES_PROMPT = "the policy ignores the prompt"
"""A control's cell where its interval is exactly [0, 0]: a prompt-blind policy's, not a precise measurement."""


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
    from noiseppo.sampling.render import encode_distinct

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
    from noiseppo.sampling.render_and_score import score_side

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


def control_cells(found: dict[str, tuple[float, float, float]]) -> dict[str, str]:
    """The cell of each control, from the (value, 95% low, 95% high) of those ``found``: the
    figure and its interval, ``IGNORES_PROMPT`` for exactly [0, 0], or why it is absent
    (``ABSENT``); {} where neither was measured (the caller then shows no column)."""
    if not found:
        return {}
    cells = {}
    for side in SIDES:
        if side not in found:
            cells[side] = ABSENT[side]
            continue
        value, low, high = found[side]
        cells[side] = IGNORES_PROMPT if low == high == 0 else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
    return cells


def control_notes() -> list[str]:
    """The sentences that say what own - other and own - mirror mean, for under a table."""
    return [f"own - {side}: {MEANINGS[side]}." for side in SIDES]


def eval_row_controls(row: dict) -> dict[str, str]:
    """``control_cells`` of a row of ``eval.json`` (``own_minus_{side}``, ``ci95_{side}_low/high``)."""
    sides = [s for s in SIDES if f"own_minus_{s}" in row]
    return control_cells({s: (row[f"own_minus_{s}"], row[f"ci95_{s}_low"], row[f"ci95_{s}_high"]) for s in sides})


def held_out_controls(row: dict, metric: str) -> dict[str, str]:
    """``control_cells`` of ``metric`` in a held-out row of ``metrics.jsonl``
    (``eval_own_minus_{side}_{metric}`` and its ``_ci95_low/high``)."""
    names = {s: f"eval_own_minus_{s}_{metric}" for s in SIDES if f"eval_own_minus_{s}_{metric}" in row}
    return control_cells({s: (row[n], row[f"{n}_ci95_low"], row[f"{n}_ci95_high"]) for s, n in names.items()})


def table_controls(cells: list[dict[str, str]]) -> list[dict[str, str]]:
    """The cells of a table's rows: where some row has a control, a row with none says why
    (``ABSENT``); where none has, every row's {} (the table shows no column)."""
    return [c or dict(ABSENT) for c in cells] if any(cells) else cells
