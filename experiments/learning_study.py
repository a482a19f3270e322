"""The study behind the default that learns (docs/noise_ppo.md, "Making the policy learn").

    python experiments/learning_study.py --only NAME[,NAME] [--out runs/study] [--threads 1]
        [--seeds 4] [--train-seed 0]

Each variant is the ``shapes`` preset with the keys in VARIANTS changed, trained from scratch
into ``OUT/NAME`` (a finished run is read back and not retrained; an interrupted one resumes).
Its final policy is then evaluated at the training step count, policy samples against standard
noise on the same seeds, on two splits:

- held-out: every ``shapes-test`` prompt x ``--seeds`` seeds (148 x 4 = 592 pairs);
- training: every fourth ``shapes-train`` prompt x ``--seeds`` seeds (137 x 4 = 548 pairs), or
  every training prompt of a variant trained on 200 or fewer.

Intervals are the project's 95% cluster bootstrap over prompts. The row also carries the
run's diagnostics over its last 10 iterations (mu_rms, clipfrac, policy_kl, approx_kl) and its
wall time. Each variant prints one JSON row; the last line is one JSON object with all rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# The previous default's policy and estimator, spelled out (the dataclass defaults have moved on).
OLD = {"query_std": 0.02, "readout": "shared", "advantages": "zscore"}
SHARED_Z = {"readout": "shared", "advantages": "zscore"}
VARIANTS: dict[str, dict[str, object]] = {
    # The shipped default (the shapes preset as it is), with its periodic held-out evaluation.
    "default": {"eval_every": 40, "eval_prompts": "shapes-test", "eval_seeds": 4},
    # The previous default (README step sweep), trained for 80 iterations of 16 x 8.
    "old-default": {**OLD},
    # One change: the cells' queries start distinct (std 1), so the map can vary in space at once.
    "query1": {**SHARED_Z, "query_std": 1.0},
    "query1-lr1e-3-rank-k16": {
        **SHARED_Z, "query_std": 1.0, "lr": 1e-3, "advantages": "rank", "samples_per_prompt": 16, "minibatch": 64,
    },
    # Adam's momentum can only average across iterations if an iteration is one step.
    "q1-cell-e1-lr1e-3-rank": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
    },
    "q1-cell-e1-lr1e-3-rank-grid4": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "grid": 4,
    },
    "q1-cell-e1-lr1e-3-rank-240": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "iterations": 240, "eval_every": 40, "eval_prompts": "shapes-test", "eval_seeds": 4,
    },
    "q1-cell-e1-lr1e-3-rank-cos160": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "iterations": 160, "lr_schedule": "cosine", "eval_every": 40, "eval_prompts": "shapes-test", "eval_seeds": 4,
    },
    "q1-cell-e1-lr1e-3-rank-beta0.98": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "adam_beta1": 0.98, "iterations": 160, "eval_every": 40, "eval_prompts": "shapes-test", "eval_seeds": 4,
    },
    "q1-cell-e1-lr1e-3-rank-p32": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 256, "lr": 1e-3, "advantages": "rank",
        "prompts_per_iteration": 32, "iterations": 80, "eval_every": 40, "eval_prompts": "shapes-test",
        "eval_seeds": 4,
    },
    "q1-cell-e1-lr1e-3-rank-grid16": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "grid": 16,
    },
    "q1-cell-e1-lr1e-3-rank-nomlp": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "feature_mlp": False, "iterations": 160, "eval_every": 40, "eval_prompts": "shapes-test", "eval_seeds": 4,
    },
    "q1-cell-e1-lr1e-3-rank-p32-cos160": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 256, "lr": 1e-3, "advantages": "rank",
        "prompts_per_iteration": 32, "iterations": 160, "lr_schedule": "cosine", "eval_every": 40,
        "eval_prompts": "shapes-test", "eval_seeds": 4,
    },
    "q1-cell-e1-lr1e-3-rank-nomlp-cos160": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "feature_mlp": False, "iterations": 160, "lr_schedule": "cosine", "eval_every": 40,
        "eval_prompts": "shapes-test", "eval_seeds": 4,
    },
    # How the held-out gain scales with the number of training prompts, at the same budget.
    "q1-cell-e1-lr1e-3-rank-prompts137": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "prompts": "runs/train-every4.txt",
    },
    "q1-cell-e1-lr1e-3-rank-prompts35": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
        "prompts": "runs/train-every16.txt",
    },
    "q1-cell-e1-lr3e-3-rank": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 3e-3, "advantages": "rank",
    },
    "q1-cell-e1-lr1e-3-zscore": {
        "query_std": 1.0, "readout": "cell", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "zscore",
    },
    "q1-shared-e1-lr1e-3-rank": {
        "query_std": 1.0, "readout": "shared", "epochs": 1, "minibatch": 128, "lr": 1e-3, "advantages": "rank",
    },
}


def evaluate(run: Path, prompts: list[str], seeds: int) -> dict[str, float]:
    """Correct-rate of policy samples against standard noise, paired by seed, with a 95% CI."""
    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.configs.presets import resolve
    from noiseppo.evaluation.paired import paired
    from noiseppo.evaluation.sides import PairedSides
    from noiseppo.policy import load_policy
    from noiseppo.rewards import get_reward
    from noiseppo.sampling.render import RenderSpec

    cfg = resolve(config_file=str(run / "config.yaml"))
    backend = get_backend(cfg.backend, cfg.model or None, cfg.scheduler, cfg.device, cfg.dtype)
    guidance = resolve_guidance(backend, cfg.guidance)  # guidance 0 stays 0
    sides = PairedSides(backend, get_reward(cfg.reward), prompts, RenderSpec(cfg.steps, guidance, seeds, 0, 128))
    standard = sides.standard()
    policy = sides.side(load_policy(run).noise_to_latents("sample"))[0]
    out: dict[str, float] = {"n": len(sides.clusters)}
    for metric in ("correct", "partial"):
        p = paired(policy[metric], standard[metric], sides.clusters, 10_000)
        out.update({f"{metric}_standard": p.base, f"{metric}_policy": p.mean,
                    f"{metric}_delta": p.delta, f"{metric}_ci": [p.low, p.high]})  # fmt: skip
    return out


def run_variant(name: str, overrides: dict, out: Path, threads: int, seeds: int, train_seed: int) -> dict:
    from noiseppo.configs.presets import resolve
    from noiseppo.prompts import load_prompts
    from noiseppo.storage.checkpoint import has_state
    from noiseppo.training.trainer import train

    run = out / name if train_seed == 0 else out / f"{name}-seed{train_seed}"
    # No periodic held-out evaluation unless the variant asks for one (a learning curve).
    settings = {"eval_every": 0, "eval_prompts": "", **overrides, "seed": train_seed, "threads": threads}
    config = resolve(overrides=[f"{k}={v}" for k, v in settings.items()])
    wall = None
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if run.exists() else []
    if not rows or rows[-1]["iteration"] < config.iterations:
        t0 = time.perf_counter()
        train(config, run, resume=has_state(run / "checkpoint"), quiet=True)
        wall = time.perf_counter() - t0
        (run / "wall_s.txt").write_text(f"{wall:.0f}\n")
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    elif (run / "wall_s.txt").exists():
        wall = float((run / "wall_s.txt").read_text())
    tail = [r for r in rows if "reward_mean" in r][-10:]
    result: dict = {"variant": name, "train_seed": train_seed, "overrides": overrides, "wall_s": wall,
                    "iterations": rows[-1]["iteration"], "samples": rows[-1]["iteration"] * config.prompts_per_iteration
                    * config.samples_per_prompt}  # fmt: skip
    for key in ("reward_mean", "mu_rms", "clipfrac", "approx_kl", "policy_kl", "stopped_early"):
        result[key] = float(np.mean([r[key] for r in tail]))
    train_set = load_prompts(config.prompts)
    train_set = train_set[::4] if len(train_set) > 200 else train_set  # every fourth of shapes-train
    result["held_out"] = evaluate(run, load_prompts("shapes-test"), seeds)
    result["train"] = evaluate(run, train_set, seeds)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4, help="evaluation seeds per prompt")
    ap.add_argument("--train-seed", type=int, default=0)
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else list(VARIANTS)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        result = run_variant(name, VARIANTS[name], Path(args.out), args.threads, args.seeds, args.train_seed)
        results.append(result)
        print(json.dumps(result), flush=True)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
