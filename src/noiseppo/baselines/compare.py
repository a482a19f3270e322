"""``noiseppo compare``: every baseline and Noise PPO on the same held-out prompts, seeds and reward.

Methods (``--methods``, comma-separated):

* ``standard``: the frozen model with N(0, I) noise (the reference every Δ is paired with);
* ``best-of-N``: N standard-noise candidates per image, the reward picks one (``noiseppo.baselines.best_of_n``);
  N renders and N reward calls per image, and the reward at inference is an oracle;
* ``search@B``: per-prompt black-box search (``noiseppo.baselines.search``) with B renders per prompt, run
  *on the held-out prompts themselves* (a test-time method), then evaluated on fresh seeds;
* ``noise-ppo``: trains the default preset (``noiseppo train``) in this run, then its policy samples;
  ``noise-ppo+best-of-N``: best-of-N of that policy's samples;
* ``noise-ppo-blind``: the same trainer, budget and seed with the prompt hidden from the policy
  (``prompt_blind``): the control that says what conditioning on the prompt adds;
* ``golden-top-K``: the K noises with the best mean over a shared-noise matrix of the preset's
  training prompts (``noiseppo golden``'s choice: ``--golden-noises`` noises x every 8th training
  prompt); image j of every held-out prompt uses golden noise j mod K. A prompt-generic fix at 1x
  inference;
* ``policy:NAME``: a shipped or saved policy, not trained here (e.g. ``policy:shapes-steps4``);
* ``ddpo`` / ``ddpo@I``: DDPO (``noiseppo.baselines.ddpo``) at the preset's budget or for I iterations,
  evaluated with its tuned weights (DDIM η = 0, the same initial noise).

Every method is scored on ``--prompts`` x ``--seeds`` images whose noise is ``noiseppo sample
--seed``'s, so each row pairs with ``standard`` image by image; intervals are 95% cluster
bootstraps over prompts. ``compare.json`` (docs/baselines.md documents it)::

    {"prompts": "shapes-test", "seeds": 4, "seed": 0, "steps": 4, "reward": "shapes", "metric": "correct",
     "pairs": 592, "methods": [...],
     "rows": [{"method": "best-of-4", "renders_train": 0, "renders_per_image": 4,
               "reward_calls_per_image": 4, "oracle_at_inference": true, "train_wall_s": 0.0,
               "peak_rss_mb": null, "weights_change": false, "n": 592,
               "correct": 0.41, "correct_ci95_low": 0.37, "correct_ci95_high": 0.45,
               "delta": 0.17, "delta_ci95_low": 0.14, "delta_ci95_high": 0.20, "partial": 0.70,
               "note": "..."}, ...],
     "search_curve": [{"renders_per_prompt": 32, "correct": ..., "correct_ci95_low": ..., ...}, ...],
     "curves": {"noise-ppo": [{"iteration": 40, "train_time_s": ..., "eval_correct": ...}], "ddpo": [...]},
     "against_best_of_n": {...}, "against_ddpo": {...}}
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from noiseppo.analysis.golden import best_noises
from noiseppo.analysis.golden_run import noise_seeds, render_and_score, reward_matrices
from noiseppo.backends.shapes import ShapesBackend
from noiseppo.baselines.best_of_n import render_candidates
from noiseppo.baselines.memory import PeakRSS
from noiseppo.configs.baselines import DDPOConfig, SearchConfig
from noiseppo.errors import UserError
from noiseppo.evaluation.paired import paired, paired_bootstrap
from noiseppo.evaluation.specificity import controls, specificity_row
from noiseppo.prompts import load_prompts
from noiseppo.rewards import get_reward
from noiseppo.sampling.render import LatentsFn, RenderSpec
from noiseppo.sampling.render_and_score import score_side
from noiseppo.sampling.seeds import standard_noise

if TYPE_CHECKING:
    from noiseppo.configs.train import TrainConfig
    from noiseppo.policy import NoisePolicy

PATTERNS = {
    "standard": r"standard",
    "best-of": r"best-of-(\d+)",
    "search": r"search@(\d+)",
    "noise-ppo": r"noise-ppo",
    "noise-ppo-blind": r"noise-ppo-blind",
    "golden": r"golden-top-(\d+)",
    "noise-ppo+best-of": r"noise-ppo\+best-of-(\d+)",
    "policy": r"policy:(.+)",
    "ddpo": r"ddpo(?:@(\d+))?",
}
KNOWN = (
    "standard, best-of-N, search@B, noise-ppo, noise-ppo+best-of-N, noise-ppo-blind, golden-top-K, policy:NAME, "
    "ddpo, ddpo@ITERATIONS"
)
GOLDEN_PROMPT_STRIDE = 8
"""``golden-top-K`` chooses on every this-many-th training prompt."""
SEARCH_CURVE = (32, 64, 128, 256, 512)
TOP_KEYS = (
    "prompts",
    "seeds",
    "seed",
    "steps",
    "reward",
    "metric",
    "pairs",
    "methods",
    "standard",
    "rows",
    "search_curve",
    "curves",
    "against_best_of_n",
    "against_ddpo",
)
"""The keys of compare.json (docs/baselines.md documents each)."""
ROW_KEYS = (
    "method",
    "renders_train",
    "renders_per_image",
    "reward_calls_per_image",
    "oracle_at_inference",
    "train_wall_s",
    "peak_rss_mb",
    "rss_rise_mb",
    "weights_change",
    "note",
    "n",
    "correct",
    "correct_ci95_low",
    "correct_ci95_high",
    "delta",
    "delta_ci95_low",
    "delta_ci95_high",
)
"""The keys of every row."""
SPECIFICITY_KEYS = tuple(
    f"own_minus_{side}{end}" for side in ("other", "mirror") for end in ("", "_ci95_low", "_ci95_high")
) + ("other_pairs", "mirror_pairs")
"""Keys of a policy's rows (``noise-ppo``, ``noise-ppo-blind``, ``policy:NAME``): ``evaluation.specificity``."""
OPTIONAL_ROW_KEYS = ("reward", "partial", "trajectory_bytes_per_sample", *SPECIFICITY_KEYS)
"""Keys some rows add: the reward's mean and its numeric details (Shapes: partial); DDPO's stored
bytes; a policy's prompt-specificity (own - other, own - mirror)."""


@dataclass
class Method:
    name: str
    kind: str
    arg: str | None


def parse_methods(text: str) -> list[Method]:
    """The methods of ``--methods``; an unknown or malformed one is refused by name."""
    methods = []
    for name in (m.strip() for m in text.split(",")):
        for kind, pattern in PATTERNS.items():
            match = re.fullmatch(pattern, name)
            if match:
                arg = match.group(1) if match.groups() else None
                if kind in ("best-of", "noise-ppo+best-of", "search", "golden") and int(arg) < 1:
                    raise UserError(f"--methods: '{name}' needs a count >= 1")
                methods.append(Method(name, kind, arg))
                break
        else:
            raise UserError(f"--methods: unknown method '{name}' (known: {KNOWN})")
    if len({m.name for m in methods}) != len(methods):
        raise UserError("--methods: a method is named twice")
    return methods


def mean_ci(values: np.ndarray, clusters: np.ndarray, resamples: int) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95% cluster-bootstrap interval over prompts."""
    low, high = paired_bootstrap(values, clusters, resamples)
    return float(values.mean()), low, high


def score_row(metrics: dict, standard: dict, clusters: np.ndarray, resamples: int, metric: str) -> dict:
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


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    rows, m = result["rows"], result["metric"]
    y = np.arange(len(rows))
    means = np.array([r[m] for r in rows])
    err = np.array([[r[m] - r[m + "_ci95_low"] for r in rows], [r[m + "_ci95_high"] - r[m] for r in rows]])
    left.barh(y, means, xerr=err, capsize=3, color="#7a9cc6")
    left.set_yticks(y, [r["method"] for r in rows])
    left.invert_yaxis()
    left.set_xlabel(f"held-out {m} at {result['steps']} steps (95% CI)")
    curve = result["search_curve"]
    if curve:
        xs = [c["renders_per_prompt"] for c in curve]
        ms = np.array([c[m] for c in curve])
        e = np.array([[c[m] - c[m + "_ci95_low"] for c in curve], [c[m + "_ci95_high"] - c[m] for c in curve]])
        right.errorbar(xs, ms, yerr=e, marker="o", capsize=3, label="search (fresh seeds)")
        right.axhline(result["standard"][m], color="grey", linewidth=0.8, label="standard")
        right.set_xscale("log", base=2)
        right.set_xlabel("search renders per prompt")
        right.set_ylabel(f"held-out {m}")
        right.legend()
    elif result["curves"]:  # no search: the trained methods' held-out metric against training time
        for name, points in result["curves"].items():
            right.plot([c["train_time_s"] for c in points], [c[f"eval_{m}"] for c in points], marker="o", label=name)
        right.axhline(result["standard"][m], color="grey", linewidth=0.8, label="standard")
        right.set_xlabel("training wall time (s, without held-out passes)")
        right.set_ylabel(f"held-out {m}")
        right.legend()
    else:
        right.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def golden_noises(backend, reward, prompts: list[str], steps: int, seed: int, k: int, candidates: int) -> torch.Tensor:
    """The ``k`` of ``candidates`` shared noises with the best mean correct-rate (else reward) over
    ``prompts``: ``noiseppo golden``'s choice, made on prompts other than those evaluated."""
    seeds = noise_seeds(seed + 1, candidates)  # not the evaluated images' noises (seed rule, seed)
    matrices = reward_matrices(backend, reward, prompts, seeds, steps, 1.0, 128)
    chosen = best_noises(matrices.get("correct", matrices.get("reward")), k)
    return standard_noise(backend.latent_shape, [seeds[j] for j in chosen])


@dataclass
class _Comparison:
    """One ``noiseppo compare`` run: what every method shares (the model, the reward, the held-out
    images' RenderSpec, the standard side) and the rows so far. ``RUNNERS`` maps each kind of
    method to the method below that adds its row; work several methods share (the trained policy,
    the best-of-N candidates, the search) is done once, when the first of them asks."""

    out: Path
    backend: ShapesBackend
    reward: Any
    prompts: list[str]
    prompts_name: str
    spec: RenderSpec
    preset: str
    threads: int
    iterations: int
    search_curve: tuple[int, ...]
    resamples: int
    golden_candidates: int
    say: Callable[[str], None]
    methods: list[Method]
    rows: dict[str, dict] = field(default_factory=dict)
    per_image: dict[str, dict] = field(default_factory=dict)
    curves: dict[str, list[dict]] = field(default_factory=dict)
    search_points: list[dict] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.standard, samples = score_side(self.backend, self.reward, self.prompts, self.spec, None)
        self.clusters = np.array([s.prompt_index for s in samples])
        # The table's metric: the reward's verdict where it gives one (Shapes: correct), else the reward.
        self.metric = "correct" if "correct" in self.standard else "reward"
        self.per_image["standard"] = self.standard
        self.held_out = (f"eval_prompts={self.prompts_name}", f"eval_seeds={self.spec.seeds}")
        if self.iterations:
            self.held_out += (f"iterations={self.iterations}",)

    # -- the rows -----------------------------------------------------------------------------
    def evaluate(self, latents_fn: LatentsFn | None = None, view: ShapesBackend | None = None) -> dict:
        return score_side(view or self.backend, self.reward, self.prompts, self.spec, latents_fn)[0]

    def add(self, name: str, metrics: dict, **info) -> None:
        self.per_image[name] = metrics
        row = score_row(metrics, self.standard, self.clusters, self.resamples, self.metric)
        self.rows[name] = {"method": name, **BASE_ROW, **info, **row}
        m, r = self.metric, self.rows[name]
        self.say(
            f"{name}: {m} {r[m]:.3f} [{r[m + '_ci95_low']:.3f}, {r[m + '_ci95_high']:.3f}], "
            f"delta {r['delta']:+.3f} [{r['delta_ci95_low']:+.3f}, {r['delta_ci95_high']:+.3f}]"
        )

    def add_policy(self, name: str, policy, **info) -> None:
        """A policy's row, with its prompt-specificity on the metric (own - other, own - mirror)."""
        self.add(name, self.evaluate(policy.noise_to_latents("sample")), **info)
        sides = controls(self.backend, policy, self.reward, self.prompts, self.spec)
        specific = specificity_row(self.per_image[name], self.clusters, sides, self.resamples)
        row = self.rows[name]
        for side in sides:
            key = f"own_minus_{side}_{self.metric}"
            row[f"{side}_pairs"] = int(specific[f"{side}_pairs"])
            for end in ("", "_ci95_low", "_ci95_high"):
                row[f"own_minus_{side}{end}"] = specific[f"{key}{end}"]
        self.say(f"{name}: " + ", ".join(f"own - {side} {row[f'own_minus_{side}']:+.3f}" for side in sides))

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- one runner per kind of method (RUNNERS) -----------------------------------------------
    def standard_row(self, m: Method) -> None:
        self.add(m.name, self.standard, note="the frozen model's own noise")

    def trained(self, kind: str) -> tuple[NoisePolicy, dict, TrainConfig]:
        """``noise-ppo`` or ``noise-ppo-blind`` trained in this run (once), with its cost and config."""
        from noiseppo.configs.presets import resolve
        from noiseppo.policy import load_policy
        from noiseppo.training.trainer import train

        def make():
            extra = ["prompt_blind=true"] if kind == "noise-ppo-blind" else []
            threads = [f"threads={self.threads}"] if self.threads else []
            config = resolve(self.preset, overrides=[*self.held_out, *extra, *threads])
            _, cost = timed(lambda: train(config, self.out / kind, quiet=True))
            self.curves[kind] = noise_ppo_curve(self.out / kind, self.metric)
            cost["train_wall_s"] = self.curves[kind][-1]["train_time_s"]  # without the held-out passes
            return load_policy(self.out / kind), cost, config

        return self.once(kind, make)

    def trained_row(self, m: Method) -> None:
        policy, cost, config = self.trained(m.kind)
        blind = ", the prompt hidden from the policy" if config.prompt_blind else ""
        note = f"preset '{self.preset}'{blind}, trained in this run (training prompts {config.prompts})"
        self.add_policy(m.name, policy, renders_train=renders_of(config), **cost, note=note)

    def saved_policy_row(self, m: Method) -> None:
        from noiseppo.policy import load_policy

        self.add_policy(m.name, load_policy(m.arg), note="a saved policy, not trained here")

    def golden_row(self, m: Method) -> None:
        from noiseppo.configs.presets import resolve

        k, seeds = int(m.arg), self.spec.seeds
        train_prompts = load_prompts(resolve(self.preset).prompts)[::GOLDEN_PROMPT_STRIDE]
        spec, candidates = self.spec, self.golden_candidates
        noises, cost = timed(
            lambda: golden_noises(self.backend, self.reward, train_prompts, spec.steps, spec.seed, k, candidates)
        )
        jobs = [p for p in self.prompts for _ in range(seeds)]
        metrics = render_and_score(
            self.backend, self.reward, jobs, lambda idx: noises[idx % seeds % len(noises)], self.spec.steps, 1.0, 128
        )
        self.add(
            m.name,
            metrics,
            renders_train=len(train_prompts) * self.golden_candidates,
            **cost,
            note=f"top {k} of {self.golden_candidates} shared noises on {len(train_prompts)} training prompts; "
            "image j uses noise j mod K",
        )

    def ddpo_row(self, m: Method) -> None:
        from noiseppo.baselines.ddpo import train_ddpo

        # DDPO's own held-out pass is off: the table's evaluation below is the same images, once.
        iterations = int(m.arg) if m.arg else self.iterations
        config = DDPOConfig(preset=self.preset, iterations=iterations, threads=self.threads, eval=False)
        summary, cost = timed(lambda: train_ddpo(config, self.out / "ddpo", None, True, self.held_out))
        cost["train_wall_s"] = summary["train_time_s"]  # without the held-out passes
        metrics = self.evaluate(view=ShapesBackend.from_pretrained(self.out / "ddpo" / "model"))
        final = {"iteration": summary["iterations"], "train_time_s": summary["train_time_s"]}
        self.curves["ddpo"] = [{**final, f"eval_{self.metric}": float(np.nanmean(metrics[self.metric]))}]
        self.add(
            m.name,
            metrics,
            renders_train=summary["renders"],
            **cost,
            weights_change=True,
            trajectory_bytes_per_sample=summary["trajectory_bytes_per_sample"],
            note=f"{summary['renders']} trajectories, {summary['stochastic_steps']} stochastic steps each",
        )

    def best_of_row(self, m: Method) -> None:
        n_max = max(int(x.arg) for x in self.methods if x.kind == "best-of")  # one rendering serves every N
        spec = self.spec
        cands = self.once(
            "best-of",
            lambda: render_candidates(
                self.backend, self.reward, self.prompts, spec.seeds, n_max, spec.steps, 1.0, spec.seed
            ),
        )
        n = int(m.arg)
        self.add(
            m.name,
            cands.best(n),
            renders_per_image=n,
            reward_calls_per_image=n,
            oracle_at_inference=True,
            note="the reward picks at inference: an oracle a deployed model usually lacks",
        )

    def policy_best_of_row(self, m: Method) -> None:
        policy, cost, config = self.trained("noise-ppo")
        n, spec = int(m.arg), self.spec
        cands = render_candidates(
            self.backend,
            self.reward,
            self.prompts,
            spec.seeds,
            n,
            spec.steps,
            1.0,
            spec.seed,
            latents_fn=policy.noise_to_latents("sample"),
        )
        self.add(
            m.name,
            cands.best(n),
            renders_train=renders_of(config),
            renders_per_image=n,
            reward_calls_per_image=n,
            oracle_at_inference=True,
            train_wall_s=cost["train_wall_s"],
            note="best-of-N of the policy's samples",
        )

    def search_row(self, m: Method) -> None:
        from noiseppo.baselines.search import mean_latents_fn, search

        budgets = sorted({int(x.arg) for x in self.methods if x.kind == "search"})
        cfg = SearchConfig(budget=max(budgets), steps=self.spec.steps, seed=self.spec.seed)
        points = sorted({b for b in (*self.search_curve, *budgets) if cfg.group <= b <= cfg.budget})

        def run_search():  # once for every budget, and the curve on fresh seeds
            result, cost = timed(lambda: search(self.backend, self.reward, self.prompts, cfg, snapshot_at=points))
            texts = self.backend.encode(self.prompts).prompts
            seconds = {row["renders"]: row["time_s"] for row in result.log}
            metrics = {}
            for b in points:
                metrics[b] = self.evaluate(mean_latents_fn(result.snapshots[b], texts, self.backend.latent_shape))
                used = b // cfg.group * cfg.group
                row = score_row(metrics[b], self.standard, self.clusters, self.resamples, self.metric)
                self.search_points.append({"renders_per_prompt": b, "search_time_s": seconds[used], **row})
            return metrics, seconds, cost

        metrics, seconds, cost = self.once("search", run_search)
        b = int(m.arg)
        used = b // cfg.group * cfg.group
        self.add(
            m.name,
            metrics[b],
            renders_train=used * len(self.prompts),
            train_wall_s=seconds[used],
            peak_rss_mb=cost["peak_rss_mb"],
            rss_rise_mb=cost["rss_rise_mb"],
            note="searched on the held-out prompts themselves (test-time), evaluated on fresh seeds",
        )


RUNNERS: dict[str, Callable[[_Comparison, Method], None]] = {
    "standard": _Comparison.standard_row,
    "noise-ppo": _Comparison.trained_row,
    "noise-ppo-blind": _Comparison.trained_row,
    "policy": _Comparison.saved_policy_row,
    "golden": _Comparison.golden_row,
    "ddpo": _Comparison.ddpo_row,
    "best-of": _Comparison.best_of_row,
    "noise-ppo+best-of": _Comparison.policy_best_of_row,
    "search": _Comparison.search_row,
}
"""Each kind of method (``PATTERNS``) and what adds its row."""
PHASES = {
    "noise-ppo": 0,
    "noise-ppo-blind": 0,
    "standard": 1,
    "policy": 1,
    "golden": 1,
    "ddpo": 2,
    "best-of": 3,
    "noise-ppo+best-of": 4,
    "search": 5,
}
"""The order the kinds run in: training first (``run_compare``)."""
BASE_ROW = {
    "renders_train": 0,
    "renders_per_image": 1,
    "reward_calls_per_image": 0,
    "oracle_at_inference": False,
    "train_wall_s": 0.0,
    "peak_rss_mb": None,
    "rss_rise_mb": None,
    "weights_change": False,
    "note": "",
}
"""A row's cost keys before its method fills them: no training, one render, no reward at inference."""


def timed(fn: Callable[[], Any]) -> tuple[Any, dict]:
    """``fn()``, and its wall time and peak RSS (``PeakRSS``)."""
    with PeakRSS() as peak:
        start = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - start
    return value, {
        "train_wall_s": wall,
        "peak_rss_mb": peak.peak_bytes / 2**20,
        "rss_rise_mb": (peak.peak_bytes - peak.start_bytes) / 2**20,
    }


def renders_of(config: TrainConfig) -> int:
    return config.iterations * config.prompts_per_iteration * config.samples_per_prompt


def run_compare(
    methods: list[Method],
    out: Path,
    prompts_name: str = "shapes-test",
    seeds: int = 4,
    seed: int = 0,
    steps: int = 4,
    reward_name: str = "shapes",
    preset: str = "shapes",
    threads: int = 0,
    iterations: int = 0,
    search_curve: tuple[int, ...] = SEARCH_CURVE,
    resamples: int = 10_000,
    golden_candidates: int = 64,
    say=print,
) -> dict:
    """Run every method into ``out`` (an existing, empty temporary folder), in ``methods`` order
    through ``RUNNERS``, and return compare.json's body."""
    from noiseppo.policy import load_policy

    if threads:
        torch.set_num_threads(threads)
    for m in methods:  # refuse a bad policy name before anything runs
        if m.kind == "policy":
            load_policy(m.arg)
    run = _Comparison(
        out,
        ShapesBackend.from_pretrained(),
        get_reward(reward_name),
        load_prompts(prompts_name),
        prompts_name,
        RenderSpec(steps, 1.0, seeds, seed, 128),
        preset,
        threads,
        iterations,
        search_curve,
        resamples,
        golden_candidates,
        say,
        methods,
    )
    # The trainers run first, before any rendering another method keeps in memory, so that their
    # peak memory is their own; the rows come out in methods order whatever order they ran in.
    for m in sorted(methods, key=lambda m: PHASES[m.kind]):
        RUNNERS[m.kind](run, m)
    order = [m.name for m in methods]
    metric = run.metric
    body = {
        "prompts": prompts_name,
        "seeds": seeds,
        "seed": seed,
        "steps": steps,
        "reward": reward_name,
        "metric": metric,
        "pairs": len(run.clusters),
        "methods": order,
        "standard": run.rows.get("standard") or score_row(run.standard, run.standard, run.clusters, resamples, metric),
        "rows": [run.rows[name] for name in order],
        "search_curve": run.search_points,
        "curves": run.curves,
    }
    body["against_best_of_n"] = against_best_of_n(run.rows, run.per_image, run.clusters, resamples, metric)
    body["against_ddpo"] = against_ddpo(run.curves, run.rows, metric)
    (out / "compare.json").write_text(json.dumps(body, indent=1))
    plot(body, out / "compare.png")
    return body


def format_table(body: dict) -> str:
    lines = [
        "| method | renders for training | renders / reward calls per image | training wall time | peak RSS | "
        f"held-out {body['metric']} at {body['steps']} steps [95% CI] | Δ vs standard [95% CI] | own - other [95% CI] "
        "| own - mirror [95% CI] | weights change |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def control(r: dict, side: str) -> str:  # a policy's prompt-specificity; "-" for other methods
        key = f"own_minus_{side}"
        return f"{r[key]:+.3f} [{r[key + '_ci95_low']:+.3f}, {r[key + '_ci95_high']:+.3f}]" if key in r else "-"

    for r in body["rows"]:
        oracle = " (oracle reward)" if r["oracle_at_inference"] else ""
        rss = f"{r['peak_rss_mb']:.0f} MB" if r["peak_rss_mb"] else "-"
        cost = f"{r['renders_per_image']} / {r['reward_calls_per_image']}{oracle}"
        m = body["metric"]
        correct = f"{r[m]:.3f} [{r[m + '_ci95_low']:.3f}, {r[m + '_ci95_high']:.3f}]"
        delta = f"{r['delta']:+.3f} [{r['delta_ci95_low']:+.3f}, {r['delta_ci95_high']:+.3f}]"
        weights = "yes (a copy)" if r["weights_change"] else "no"
        lines.append(
            f"| {r['method']} | {r['renders_train']:,} | {cost} | {r['train_wall_s']:.0f} s | {rss} | {correct} "
            f"| {delta} | {control(r, 'other')} | {control(r, 'mirror')} | {weights} |"
        )
    return "\n".join(lines)
