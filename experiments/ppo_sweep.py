"""The sweep behind the default PPO settings: log-prob convention, learning rate, trust region.

    python experiments/ppo_sweep.py [--out runs/sweep] [--iterations 60] [--steps 4]
        [--only NAME,NAME] [--threads 0]

Each variant is the ``shapes`` preset with a few keys changed, trained for
``--iterations`` iterations into ``OUT/NAME`` (a finished run is read back, not
retrained). The table gives, per variant, the held-out correct-rate of policy samples
against standard noise (shapes-test, 2 seeds per prompt, paired), the last training
reward, and the trust-region diagnostics averaged over the last 10 iterations:
clipfrac, approx_kl (in the variant's convention), the exact per-dimension KL between
consecutive policies, and the RMS of the learned mean. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

VARIANTS: dict[str, dict[str, object]] = {
    "sum-lr3e-4": {"logprob": "sum", "lr": 3e-4, "target_kl": 0.001},
    "mean-lr3e-5-nostop": {"logprob": "mean", "lr": 3e-5, "target_kl": 0.0},
    "mean-lr3e-4-kl1e-3": {"logprob": "mean", "lr": 3e-4, "target_kl": 0.001},
    "mean-lr3e-4-kl1e-3-prior0.1": {"logprob": "mean", "lr": 3e-4, "target_kl": 0.001, "kl_coef": 0.1},
    "mean-lr1e-4-prior0.01": {"logprob": "mean", "lr": 1e-4, "target_kl": 0.001, "kl_coef": 0.01},
    "mean-lr3e-4-kl1e-3-vp": {"logprob": "mean", "lr": 3e-4, "target_kl": 0.001, "preserve_variance": True},
    "mean-lr1e-4-prior0.01-grid4": {"logprob": "mean", "lr": 1e-4, "target_kl": 0.001, "kl_coef": 0.01, "grid": 4},
    "mean-lr3e-4-prior0.1-grid4": {"logprob": "mean", "lr": 3e-4, "target_kl": 0.001, "kl_coef": 0.1, "grid": 4},
    # Advantages from each prompt's own group of samples only (GRPO-style), with and without
    # mirrored noise pairs; the default falls back to batch statistics on a prompt's first visit.
    "group-adv": {"adv_buffer": 8, "adv_min_count": 8},
    "group-adv-antithetic": {"adv_buffer": 8, "adv_min_count": 8, "antithetic": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/sweep", help="folder of the variants' run folders")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    from noiseppo.configs.presets import resolve  # after the arguments: --help answers at once
    from noiseppo.storage.checkpoint import has_state
    from noiseppo.training.trainer import train

    names = args.only.split(",") if args.only else list(VARIANTS)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        run = Path(args.out) / name
        if not (run / "metrics.jsonl").exists() or _last(run)["iteration"] < args.iterations:
            overrides = {"iterations": args.iterations, "steps": args.steps, "eval_seeds": 2, "eval_every": 20}
            overrides.update(VARIANTS[name], threads=args.threads)
            config = resolve(overrides=[f"{k}={v}" for k, v in overrides.items()])
            train(config, run, resume=has_state(run / "checkpoint"), quiet=True)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        tail = [r for r in rows if "reward_mean" in r][-10:]
        last = rows[-1]
        result = {
            "variant": name,
            "eval_standard_correct": last["eval_standard_correct"],
            "eval_correct": last["eval_correct"],
            "eval_gain": last["eval_correct"] - last["eval_standard_correct"],
            "eval_partial_gain": last["eval_partial"] - last["eval_standard_partial"],
            "train_reward_first": rows[1]["reward_mean"],
            "train_reward_last10": float(np.mean([r["reward_mean"] for r in tail])),
        }
        for key in ("clipfrac", "approx_kl", "policy_kl", "mu_rms", "sigma_mean", "minibatch_steps"):
            result[key] = float(np.mean([r[key] for r in tail]))
        results.append(result)
        print(json.dumps(result), flush=True)

    print(
        f"\n{'variant':<30}{'std':>7}{'policy':>8}{'gain':>8}{'reward':>8}{'clipfr':>8}{'apx_kl':>9}{'kl/dim':>9}{'mu_rms':>8}"
    )
    for r in results:
        print(
            f"{r['variant']:<30}{r['eval_standard_correct']:>7.3f}{r['eval_correct']:>8.3f}{r['eval_gain']:>+8.3f}"
            f"{r['train_reward_last10']:>8.3f}{r['clipfrac']:>8.3f}{r['approx_kl']:>9.2e}{r['policy_kl']:>9.2e}"
            f"{r['mu_rms']:>8.3f}"
        )
    print(json.dumps({"iterations": args.iterations, "steps": args.steps, "variants": results}))


def _last(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


if __name__ == "__main__":
    main()
