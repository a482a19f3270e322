"""The study of prompt-specific learning (docs/noise_ppo.md, "Learning what each prompt needs").

    python experiments/specificity_study.py --only NAME[,NAME] [--out runs/spec] [--threads 1]
        [--seeds 4] [--train-seeds 2] [--train-seed 0]

Each variant is the ``shapes`` preset with the keys in VARIANTS changed, trained from scratch
into ``OUT/NAME`` (a finished run is read back, an interrupted one resumes; ``--train-seed`` s > 0
trains into ``OUT/NAME-seed{s}``). Its final policy is then evaluated at the training step
count on two splits, every side paired by seed with standard noise:

- held-out: every ``shapes-test`` prompt x ``--seeds`` seeds (148 x 4 = 592 pairs);
- training: every fourth ``shapes-train`` prompt x ``--train-seeds`` seeds (137 x 2 = 274 pairs).

On each split: Δ correct against standard noise; own - other and own - mirror
(``noiseppo.evaluation.specificity``); the within-prompt diversity of the policy's images as a fraction of
standard noise's (``noiseppo.evaluation.evaluate.diversity``). Intervals are the project's 95% cluster
bootstrap over prompts. The row also carries the run's mu_rms, clipfrac, approx_kl and policy_kl
over its last 10 iterations, and its wall time. Each variant prints one JSON row; the last line
is one JSON object with all rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from noiseppo.configs.train import TrainConfig
    from noiseppo.policy import NoisePolicy

SHARED = {"shared_noise": True}
VARIANTS: dict[str, dict[str, object]] = {
    # The control: the default with the prompt hidden from the policy (what the prompt adds).
    "default-blind": {"prompt_blind": True},
    # The default before this study is ``shipped:shapes-steps4`` (the shapes preset, seed 0).
    # One change each from the default: every prompt of an iteration gets the same 8 noises,
    # and that fraction of each noise's mean advantage over the 16 prompts is removed.
    "shared": {**SHARED},
    "shared-centre0.9": {**SHARED, "noise_centring": 0.9},
    "shared-centre1": {**SHARED, "noise_centring": 1.0},
    # One change from each of those: the token readout (each contextual token paints a map).
    "shared-centre0.9-token": {**SHARED, "noise_centring": 0.9, "readout": "token"},
    "shared-centre1-token": {**SHARED, "noise_centring": 1.0, "readout": "token"},
    # One change from shared-centre1: ten times the learning rate (each prompt's own direction gets
    # only a small share of the shared weights' normalised Adam step).
    "shared-centre1-lr1e-2": {**SHARED, "noise_centring": 1.0, "lr": 1e-2},
    # The binding study (issue 32): each token position's state whitened with fixed statistics of
    # the training prompts, then a linear map per position (no attention).
    "position": {"readout": "position"},
}


def evaluate(policy: NoisePolicy, cfg: TrainConfig, prompts: list[str], seeds: int) -> dict:
    """Δ correct, own - other, own - mirror and diversity of ``policy`` (trained with ``cfg``) on ``prompts``."""
    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.evaluation.evaluate import diversity
    from noiseppo.evaluation.paired import paired
    from noiseppo.evaluation.sides import PairedSides
    from noiseppo.rewards import get_reward
    from noiseppo.sampling.render import RenderSpec

    backend = get_backend(cfg.backend, cfg.model or None, cfg.scheduler, cfg.device, cfg.dtype)
    guidance = resolve_guidance(backend, cfg.guidance)  # guidance 0 stays 0
    sides = PairedSides(backend, get_reward(cfg.reward), prompts, RenderSpec(cfg.steps, guidance, seeds, 0, 128))
    standard, (own, samples) = sides.standard(), sides.side(policy.noise_to_latents("sample"))
    p = paired(own["correct"], standard["correct"], sides.clusters, 10_000)
    out: dict = {"n": p.n, "standard": p.base, "policy": p.mean, "delta": p.delta, "delta_ci": [p.low, p.high]}
    spec = sides.specificity(policy, own, 10_000)
    for side in ("other", "mirror"):
        key = f"own_minus_{side}_correct"
        out[f"own_minus_{side}"] = spec[key]
        out[f"own_minus_{side}_ci"] = [spec[f"{key}_ci95_low"], spec[f"{key}_ci95_high"]]
        out[f"{side}_pairs"] = spec[f"{side}_pairs"]
    images = {"standard": sides.standard_samples, "policy": samples}
    div = {side: diversity([s.image for s in images[side]], sides.clusters) for side in images}
    out["diversity_standard"], out["diversity_policy"] = div["standard"], div["policy"]
    out["diversity_ratio"] = div["policy"] / div["standard"]
    return out


def run_variant(name: str, overrides: dict, out: Path, threads: int, seeds: int, train_seeds: int, seed: int) -> dict:
    from noiseppo.configs.presets import resolve
    from noiseppo.policy import load_policy
    from noiseppo.prompts import load_prompts
    from noiseppo.storage.checkpoint import has_state
    from noiseppo.training.trainer import train

    run = out / name if seed == 0 else out / f"{name}-seed{seed}"
    settings = {"eval_every": 0, "eval_prompts": "", **overrides, "seed": seed, "threads": threads}
    config = resolve(overrides=[f"{k}={v}" for k, v in settings.items()])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if run.exists() else []
    if not rows or rows[-1]["iteration"] < config.iterations:
        t0 = time.perf_counter()
        train(config, run, resume=has_state(run / "checkpoint"), quiet=True)
        (run / "wall_s.txt").write_text(f"{time.perf_counter() - t0:.0f}\n")
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    wall = float((run / "wall_s.txt").read_text()) if (run / "wall_s.txt").exists() else None
    tail = [r for r in rows if "reward_mean" in r][-10:]
    result: dict = {"variant": name, "train_seed": seed, "overrides": overrides, "wall_s": wall,
                    "iterations": rows[-1]["iteration"]}  # fmt: skip
    result["renders"] = result["iterations"] * config.prompts_per_iteration * config.samples_per_prompt
    for key in ("reward_mean", "mu_rms", "clipfrac", "approx_kl", "policy_kl"):
        result[key] = float(np.mean([r[key] for r in tail]))
    policy = load_policy(run)
    result["held_out"] = evaluate(policy, config, load_prompts("shapes-test"), seeds)
    result["train"] = evaluate(policy, config, load_prompts("shapes-train")[::4], train_seeds)
    return result


def stopped_row(name: str, out: Path, seeds: int, train_seeds: int) -> dict:
    """A variant whose run was stopped before its last iteration, evaluated as it stands (its
    ``policy/`` is the last checkpoint's), not trained further."""
    from noiseppo.configs.presets import resolve
    from noiseppo.policy import load_policy
    from noiseppo.prompts import load_prompts

    run = out / name
    config = resolve(config_file=str(run / "config.yaml"))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    done = json.loads((run / "checkpoint" / "latest.json").read_text())
    result: dict = {"variant": name, "train_seed": config.seed, "overrides": VARIANTS[name], "stopped": done}
    tail = [r for r in rows if "reward_mean" in r][-10:]
    for key in ("reward_mean", "mu_rms"):
        result[key] = float(np.mean([r[key] for r in tail]))
    policy = load_policy(run)
    result["held_out"] = evaluate(policy, config, load_prompts("shapes-test"), seeds)
    result["train"] = evaluate(policy, config, load_prompts("shapes-train")[::4], train_seeds)
    return result


def shipped_row(name: str, seeds: int, train_seeds: int) -> dict:
    """A shipped policy (trained by the preset it names, as its model card says), evaluated as a variant."""
    from noiseppo.configs.presets import resolve
    from noiseppo.policy import load_policy
    from noiseppo.prompts import load_prompts

    config = resolve()
    policy = load_policy(name)
    result: dict = {"variant": name, "train_seed": 0, "overrides": {}, "shipped": True}
    result["held_out"] = evaluate(policy, config, load_prompts("shapes-test"), seeds)
    result["train"] = evaluate(policy, config, load_prompts("shapes-train")[::4], train_seeds)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/spec")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4, help="evaluation seeds per held-out prompt")
    ap.add_argument("--train-seeds", type=int, default=2, help="evaluation seeds per training prompt")
    ap.add_argument("--train-seed", type=int, default=0)
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else list(VARIANTS)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        if name.startswith("shipped:"):  # e.g. shipped:shapes-steps4, the default before this study
            result = shipped_row(name.split(":", 1)[1], args.seeds, args.train_seeds)
        elif name.startswith("stopped:"):  # a variant's run stopped early: its last checkpoint's policy
            result = stopped_row(name.split(":", 1)[1], Path(args.out), args.seeds, args.train_seeds)
        else:
            result = run_variant(
                name, VARIANTS[name], Path(args.out), args.threads, args.seeds, args.train_seeds, args.train_seed
            )
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
