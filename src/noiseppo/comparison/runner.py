"""``run_compare``: every method of a ``noiseppo compare`` run on the same held-out prompts, seeds and
reward, on any backend, one row each.

Every method is scored on the held-out prompts x seeds images whose noise is ``noiseppo sample
--seed``'s, so each row pairs with ``standard`` image by image; intervals are 95% cluster
bootstraps over prompts (``noiseppo.comparison.stats``). A policy's rows add its
prompt-specificity, own − other and own − mirror (``noiseppo.evaluation.specificity``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from noiseppo.analysis.golden import best_noises
from noiseppo.analysis.golden_run import noise_seeds, reward_matrices, score_jobs
from noiseppo.backends import get_backend
from noiseppo.backends.base import Backend, resolve_guidance
from noiseppo.baselines.best_of_n import render_candidates
from noiseppo.comparison.config import CompareConfig, Plan, prepare, training_overrides
from noiseppo.comparison.methods import KINDS, Method
from noiseppo.comparison.plot import plot
from noiseppo.comparison.schema import BASE_ROW
from noiseppo.comparison.stats import against_best_of_n, against_ddpo, noise_ppo_curve, score_row
from noiseppo.configs.baselines import DDPOConfig, SearchConfig
from noiseppo.errors import UserError
from noiseppo.evaluation.sides import PairedSides
from noiseppo.evaluation.specificity import SIDES
from noiseppo.memory import PeakRSS
from noiseppo.prompts import load_prompts
from noiseppo.rewards import get_reward
from noiseppo.rewards.base import Reward, redacted
from noiseppo.sampling.render import LatentsFn, RenderSpec
from noiseppo.sampling.seeds import standard_noise

if TYPE_CHECKING:
    from noiseppo.configs.train import TrainConfig
    from noiseppo.policy import NoisePolicy

GOLDEN_PROMPT_STRIDE = 8
"""``golden-top-K`` chooses on every this-many-th training prompt."""
DDPO_ADAPTER = "compare-ddpo"
"""The name the DDPO run's LoRA is loaded under into the compared pipeline, for its rows only."""


def golden_noises(
    backend: Backend, reward: Reward, prompts: list[str], spec: RenderSpec, k: int, candidates: int, metric: str
) -> torch.Tensor:
    """The ``k`` of ``candidates`` shared noises with the best mean ``metric`` over ``prompts``:
    ``noiseppo golden``'s choice, made on prompts other than those evaluated."""
    seeds = noise_seeds(spec.seed + 1, candidates)  # not the evaluated images' noises (seed rule, seed)
    matrices = reward_matrices(backend, reward, prompts, seeds, spec, with_reward=metric == "reward")
    chosen = best_noises(matrices[metric], k)
    return standard_noise(backend.latent_shape, [seeds[j] for j in chosen])


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


class Comparison:
    """One ``noiseppo compare`` run: what every method shares (the model, the reward, the held-out
    images' RenderSpec, the standard side) and the rows so far. ``KINDS`` names each kind's
    runner, a method below that adds its row; work several methods share (the trained policy,
    the best-of-N candidates, the search) is done once, when the first of them asks."""

    def __init__(self, plan: Plan, out: Path, say: Callable[[str], None]) -> None:
        self.plan, self.config, self.methods, self.out, self.say = plan, plan.config, plan.methods, out, say
        c, train = plan.config, plan.train
        self.backend = get_backend(c.backend, c.model or None, train.scheduler, c.device, c.dtype)
        self.reward = get_reward(c.reward)
        self.prompts = load_prompts(c.prompts)
        self.spec = RenderSpec(
            c.steps, resolve_guidance(self.backend, train.guidance), c.seeds, c.seed, train.render_batch
        )
        self.rows: dict[str, dict] = {}
        self.per_image: dict[str, dict] = {}
        self.curves: dict[str, list[dict]] = {}
        self.search_points: list[dict] = []
        self.policies: dict[str, NoisePolicy] = {}
        self._cache: dict[str, Any] = {}

    def check(self) -> None:
        """What needs the model loaded, checked before any method runs: every ``policy:NAME``
        (loaded into ``policies``) against the backend, the pipeline DDPO tunes, the prompts."""
        from noiseppo.policy import check_policy, load_policy

        for m in self.methods:
            if m.kind == "policy":
                self.policies[m.name] = load_policy(m.arg)
                try:
                    check_policy(self.policies[m.name], self.backend)
                except UserError as e:  # say which method
                    raise UserError(f"--methods: '{m.name}': {e}") from None
            if m.kind == "ddpo" and self.config.backend == "diffusers":
                from noiseppo.baselines.ddpo_diffusers import check_pipeline

                check_pipeline(self.backend)  # type: ignore[arg-type]
        self.backend.encode(list(self.prompts))  # prompts the model cannot read: refused before any work

    def start(self) -> None:
        """The standard side, which every row pairs with."""
        self.sides = PairedSides(self.backend, self.reward, self.prompts, self.spec)
        self.standard, self.clusters = self.sides.standard(), self.sides.clusters
        # The table's metric: the reward's verdict where it gives one (Shapes: correct), else the reward.
        self.metric = "correct" if "correct" in self.standard else "reward"
        self.per_image["standard"] = self.standard

    # -- the rows -----------------------------------------------------------------------------
    def evaluate(self, latents_fn: LatentsFn | None = None, view: Backend | None = None) -> dict:
        return self.sides.side(latents_fn, view)[0]

    def add(self, name: str, metrics: dict, **info) -> None:
        self.per_image[name] = metrics
        row = score_row(metrics, self.standard, self.clusters, self.config.bootstrap, self.metric)
        self.rows[name] = {"method": name, **BASE_ROW, **info, **row}
        m, r = self.metric, self.rows[name]
        self.say(
            f"{name}: {m} {r[m]:.3f} [{r[m + '_ci95_low']:.3f}, {r[m + '_ci95_high']:.3f}], "
            f"delta {r['delta']:+.3f} [{r['delta_ci95_low']:+.3f}, {r['delta_ci95_high']:+.3f}]"
        )

    def add_policy(self, name: str, policy: NoisePolicy, **info) -> None:
        """A policy's row, with its prompt-specificity on the metric (own - other, own - mirror)."""
        self.add(name, self.evaluate(policy.noise_to_latents("sample")), **info)
        specific = self.sides.specificity(policy, self.per_image[name], self.config.bootstrap)
        sides = [side for side in SIDES if f"{side}_pairs" in specific]  # those the prompts allow
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

    # -- one runner per kind of method (KINDS) -------------------------------------------------
    def standard_row(self, m: Method) -> None:
        self.add(m.name, self.standard, note="the frozen model's own noise")

    def trained(self, kind: str) -> tuple[NoisePolicy, dict, TrainConfig]:
        """``noise-ppo`` or ``noise-ppo-blind`` trained in this run (once), with its cost and config."""
        from noiseppo.configs.presets import resolve
        from noiseppo.policy import load_policy
        from noiseppo.report.page import TrainPage
        from noiseppo.training.trainer import train

        def make():
            extra = ["prompt_blind=true"] if kind == "noise-ppo-blind" else []
            config = resolve(self.config.preset, overrides=training_overrides(self.config, *extra))
            _, cost = timed(lambda: train(config, self.out / kind, quiet=True, callbacks=[TrainPage()]))
            self.curves[kind] = noise_ppo_curve(self.out / kind, self.metric)
            cost["train_wall_s"] = self.curves[kind][-1]["train_time_s"]  # without the held-out passes
            return load_policy(self.out / kind), cost, config

        return self.once(kind, make)

    def trained_row(self, m: Method) -> None:
        policy, cost, config = self.trained(m.kind)
        blind = ", the prompt hidden from the policy" if config.prompt_blind else ""
        note = f"preset '{self.config.preset}'{blind}, trained in this run (training prompts {config.prompts})"
        self.add_policy(m.name, policy, renders_train=renders_of(config), **cost, note=note)

    def saved_policy_row(self, m: Method) -> None:
        self.add_policy(m.name, self.policies[m.name], note="a saved policy, not trained here")

    def golden_row(self, m: Method) -> None:
        k, seeds, candidates = int(m.arg), self.spec.seeds, self.config.golden_noises
        train_prompts = load_prompts(self.plan.train.prompts)[::GOLDEN_PROMPT_STRIDE]
        noises, cost = timed(
            lambda: golden_noises(self.backend, self.reward, train_prompts, self.spec, k, candidates, self.metric)
        )
        jobs = [p for p in self.prompts for _ in range(seeds)]
        metrics = score_jobs(
            self.backend,
            self.reward,
            jobs,
            lambda idx: noises[idx % seeds % len(noises)],
            self.spec,
            with_reward=self.metric == "reward",
        )
        self.add(
            m.name,
            metrics,
            renders_train=len(train_prompts) * candidates,
            **cost,
            note=f"top {k} of {candidates} shared noises on {len(train_prompts)} training prompts; "
            "image j uses noise j mod K",
        )

    def ddpo_row(self, m: Method) -> None:
        from noiseppo.baselines.ddpo import ddpo_settings, train_ddpo

        # DDPO's own held-out pass is off: the table's evaluation below is the same images, once.
        c, out = self.config, self.out / "ddpo"
        iterations = int(m.arg) if m.arg else c.iterations
        config = DDPOConfig(preset=c.preset, iterations=iterations, threads=c.threads, eval=False)
        overrides = tuple(training_overrides(c))
        if c.backend == "shapes":  # a tuned copy of the denoiser, in out/ddpo/model
            from noiseppo.backends.shapes import ShapesBackend

            summary, cost = timed(lambda: train_ddpo(config, out, c.model or None, True, overrides))
            metrics = self.evaluate(view=ShapesBackend.from_pretrained(out / "model"))
        else:  # LoRA adapters on the pipeline's U-Net, in out/ddpo/lora: loaded into this pipeline for its rows
            from noiseppo.baselines.ddpo_diffusers import train_ddpo_diffusers

            cfg = ddpo_settings(config, overrides)
            summary, cost = timed(lambda: train_ddpo_diffusers(config, cfg, out, c.model, quiet=True))
            pipe = self.backend.pipe  # type: ignore[attr-defined]
            pipe.load_lora_weights(out / "lora", adapter_name=DDPO_ADAPTER, use_safetensors=True)
            try:
                metrics = self.evaluate()
            finally:
                pipe.delete_adapters(DDPO_ADAPTER)
        cost["train_wall_s"] = summary["train_time_s"]  # without the held-out passes
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
        cands = self.once(
            "best-of", lambda: render_candidates(self.backend, self.reward, self.prompts, self.spec, n_max)
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
            self.backend, self.reward, self.prompts, spec, n, latents_fn=policy.noise_to_latents("sample")
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
        spec = self.spec
        cfg = SearchConfig(
            budget=max(budgets), steps=spec.steps, seed=spec.seed, guidance=spec.guidance, batch=spec.batch
        )
        points = sorted({b for b in (*self.config.search_curve, *budgets) if cfg.group <= b <= cfg.budget})

        def run_search():  # once for every budget, and the curve on fresh seeds
            result, cost = timed(lambda: search(self.backend, self.reward, self.prompts, cfg, snapshot_at=points))
            texts = self.backend.encode(self.prompts).prompts
            seconds = {row["renders"]: row["time_s"] for row in result.log}
            metrics = {}
            for b in points:
                metrics[b] = self.evaluate(mean_latents_fn(result.snapshots[b], texts, self.backend.latent_shape))
                used = b // cfg.group * cfg.group
                row = score_row(metrics[b], self.standard, self.clusters, self.config.bootstrap, self.metric)
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


def run_compare(config: CompareConfig, out: Path, say: Callable[[str], None] = print) -> dict:
    """Run every method of ``config`` into ``out`` (an existing, empty temporary folder) and return
    compare.json's body; also writes compare.json and compare.png there."""
    plan = prepare(config)
    config = plan.config
    if config.threads:
        torch.set_num_threads(config.threads)
    run = Comparison(plan, out, say)
    run.check()
    run.start()
    # The trainers run first, before any rendering another method keeps in memory, so that their
    # peak memory is their own; the rows come out in methods order whatever order they ran in.
    for m in sorted(plan.methods, key=lambda m: KINDS[m.kind].phase):
        getattr(run, KINDS[m.kind].runner)(m)
    order = [m.name for m in plan.methods]
    metric, resamples = run.metric, config.bootstrap
    body = {
        "prompts": config.prompts,
        "seeds": config.seeds,
        "seed": config.seed,
        "steps": config.steps,
        "reward": redacted(config.reward),  # a reward URL's fragment may hold its token
        "metric": metric,
        "pairs": len(run.clusters),
        "methods": order,
        "standard": run.rows.get("standard") or score_row(run.standard, run.standard, run.clusters, resamples, metric),
        "rows": [run.rows[name] for name in order],
        "search_curve": run.search_points,
        "curves": run.curves,
    }
    if config.backend != "shapes":  # what was compared (a Shapes run's keys stay as they were)
        body.update(backend=config.backend, model=config.model)
    body["against_best_of_n"] = against_best_of_n(run.rows, run.per_image, run.clusters, resamples, metric)
    body["against_ddpo"] = against_ddpo(run.curves, run.rows, metric)
    (out / "compare.json").write_text(json.dumps(body, indent=1))
    plot(body, out / "compare.png")
    return body
