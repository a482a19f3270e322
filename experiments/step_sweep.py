"""The step sweep: one policy per step count, each evaluated at its own step count.

    python experiments/step_sweep.py [--steps 1,2,4,8,16] [--out runs/steps] [--seeds 4]
        [--iterations N] [--threads 0] [--ship]

For every step count S, the ``shapes`` preset is trained with ``steps=S`` into
``OUT/stepsS`` (a finished run is read back, not retrained), then evaluated on the
held-out ``shapes-test`` prompts with ``--seeds`` paired seeds per prompt (148 x 4 = 592
pairs): standard noise against policy samples and against the policy mean, with 95%
cluster-bootstrap intervals (``noiseppo.evaluation.evaluate``), written to ``OUT/stepsS/eval/`` (an
existing evaluation with the same ``--seeds`` is read back). ``--ship`` copies each policy into
the package as ``shapes-stepsS`` (``noiseppo list policies``). The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="1,2,4,8,16")
    ap.add_argument("--out", default="runs/steps")
    ap.add_argument("--seeds", type=int, default=4, help="paired samples per held-out prompt")
    ap.add_argument("--iterations", type=int, default=0, help="PPO iterations (0: the preset's)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ship", action="store_true", help="copy the policies into src/noiseppo/weights/policies")
    args = ap.parse_args()
    from noiseppo.configs.presets import resolve  # after the arguments: --help answers at once
    from noiseppo.evaluation.evaluate import evaluate_steps, format_table, summarise, write_eval
    from noiseppo.policy import load_policy
    from noiseppo.prompts import load_prompts
    from noiseppo.rewards import get_reward
    from noiseppo.sampling.render import RenderSpec
    from noiseppo.storage.checkpoint import has_state
    from noiseppo.storage.files import replaced_folder
    from noiseppo.training.trainer import Trainer, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, timings = [], {}
    for steps in (int(s) for s in args.steps.split(",")):
        run = out / f"steps{steps}"
        overrides = [f"steps={steps}", f"threads={args.threads}"]
        if args.iterations:
            overrides.append(f"iterations={args.iterations}")
        config = resolve(overrides=overrides)
        start = time.time()
        if not (run / "policy").exists() or _iteration(run) < config.iterations:
            train(config, run, resume=has_state(run / "checkpoint"), quiet=True)
        timings[steps] = {"train_s": time.time() - start}

        start = time.time()
        cached = run / "eval" / "eval.json"
        if cached.exists() and json.loads(cached.read_text())["seeds"] == args.seeds:
            step_rows = json.loads(cached.read_text())["results"]  # evaluated by an earlier call
        else:
            trainer = Trainer(config)  # the same backend and guidance as training
            policy = load_policy(run)
            spec = RenderSpec(steps, trainer.guidance, args.seeds, 0, 128)
            result = evaluate_steps(trainer.backend, policy, get_reward("shapes"), load_prompts("shapes-test"), spec)
            step_rows = summarise(result)
            with replaced_folder(run / "eval") as tmp:
                header = {"policy": str(run), "prompts": "shapes-test", "seeds": args.seeds}
                header["guidance"] = trainer.guidance
                write_eval(tmp, header, step_rows, [result])
        rows.extend(step_rows)
        timings[steps]["eval_s"] = time.time() - start
        print(format_table(step_rows), flush=True)
        if args.ship:
            ship(run, steps, args)

    print("\n" + format_table([r for r in rows if r["metric"] != "reward"]))
    if len(rows) > 3:
        with replaced_folder(out / "summary") as tmp:
            header = {"prompts": "shapes-test", "seeds": args.seeds, "note": "each policy at its own step count"}
            write_eval(tmp, header, rows, [])
    print(json.dumps({"seeds": args.seeds, "timings": timings, "results": rows}))


def _iteration(run: Path) -> int:
    from noiseppo.storage.checkpoint import latest_step

    return latest_step(run / "checkpoint") or 0


def ship(run: Path, steps: int, args: argparse.Namespace) -> None:
    """Copy a run's policy into the package, with its training config and a one-line description."""
    from noiseppo.policy import SHIPPED_POLICIES
    from noiseppo.storage.files import replaced_folder

    target = SHIPPED_POLICIES / f"shapes-steps{steps}"
    with replaced_folder(target) as tmp:
        for f in (run / "policy").iterdir():
            shutil.copy(f, tmp / f.name)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["threads"] = 0
        (tmp / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rewards = [r["reward_mean"] for r in rows if "reward_mean" in r]
        what = f"Shapes model at {steps} DDIM step{'s' if steps > 1 else ''}"
        if rewards and not any(rewards):  # e.g. 1 step: a blurred average scene, whatever the noise
            what += ". Every training image scored 0, so PPO had no signal and this policy is exactly N(0, I)"
        command = f"python experiments/step_sweep.py --steps {steps} --seeds {args.seeds} --ship"
        command += f" --iterations {args.iterations}" if args.iterations else ""
        command += f" --threads {args.threads}" if args.threads else ""  # the thread count changes float sums
        (tmp / "README.txt").write_text(f"{what}; reproduce: {command}\n")


if __name__ == "__main__":
    main()
