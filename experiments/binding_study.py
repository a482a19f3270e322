"""The binding study: does Noise PPO learn which colour goes where (docs/noise_ppo.md, "Binding words to places")?

    python experiments/binding_study.py --out runs/binding/NAME [--policy config|oracle] [--renders 10240]
        [--check-every 2560] [--seeds 8] [--threads 1] [KEY=VALUE ...]

Trains the ``shapes`` preset with the ``KEY=VALUE`` overrides through the project's own ``Trainer``
(its rollout, per-prompt advantages and PPO update, one iteration after another) on the
``shapes-train`` relation prompts ("a c1 s1 REL a c2 s2") for ``--renders`` renders, then evaluates
on all 112 ``shapes-test`` relation prompts (unseen object pairs) x ``--seeds`` seeds with the
trainer's held-out pass: Δ correct against standard noise, own - other and own - mirror
(``noiseppo.evaluation.specificity``), each with the project's 95% cluster-bootstrap interval.

``--policy oracle`` trains the diagnostic ``RoleFeaturePolicy`` (``experiments/binding.py``) instead,
the ceiling of an amortised policy under this estimator and budget; give it the estimator the probe
used: ``lr=0.02 lr_schedule=constant kl_coef=0 max_grad_norm=1e9 logprob=sum``.

``--splits`` (also after training) adds the study's second evaluation of the saved policy, with
``experiments/specificity_study.py``'s ``evaluate`` (seed 0): Δ, own - other, own - mirror and the
within-prompt diversity as a fraction of standard noise's, on the held-out relation prompts x
``--seeds`` and, kept apart, on the training relation prompts x ``--train-seeds``.
``--evaluate-only`` trains nothing: it reads ``--out/policy`` and runs that evaluation alone.

Every ``--check-every`` renders, a quick check on every fourth held-out relation prompt x 4 seeds
gives the correct-rate of the policy's own latents and of its mirrored prompt's (the curve of own -
mirror against renders). Each check prints a JSON line; the last printed line is one JSON object.
Nothing is written but ``--out/prompts-*.txt`` (the prompt files the trainer reads) and the final policy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from binding import RoleFeaturePolicy, relation_prompts
from safetensors.torch import load_file

from noiseppo.configs.presets import resolve
from noiseppo.evaluation.specificity import partner_latents
from noiseppo.policy import NoisePolicy, load_policy
from noiseppo.prompts import mirror_prompt
from noiseppo.sampling.render import RenderSpec
from noiseppo.sampling.render_and_score import score_side
from noiseppo.training.trainer import Trainer

CHECK_SEED = 4242
"""Base seed of the quick checks' standard noise (the final pass uses the trainer's EVAL_SEED)."""


def quick_check(trainer: Trainer, prompts: list[str]) -> dict[str, float]:
    """Correct-rate of the policy's latents for each prompt's own text and for its mirror, same seeds."""
    cfg, backend, policy = trainer.config, trainer.backend, trainer.policy
    spec = RenderSpec(cfg.steps, trainer.guidance, 4, CHECK_SEED, cfg.render_batch, cfg.overlap_scoring)
    canonical = backend.encode(prompts).prompts
    mirrors = partner_latents(policy, backend, {c: mirror_prompt(c) for c in canonical}, "sample")
    own, _ = score_side(backend, trainer.reward, prompts, spec, policy.noise_to_latents("sample"))
    mirror, _ = score_side(backend, trainer.reward, prompts, spec, mirrors)
    return {"own": round(float(np.mean(own["correct"])), 3), "mirror": round(float(np.mean(mirror["correct"])), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides of the shapes preset")
    parser.add_argument("--out", required=True, help="a folder for the prompt files and the final policy")
    parser.add_argument("--policy", choices=("config", "oracle"), default="config")
    parser.add_argument("--renders", type=int, default=10240, help="training renders (iterations x batch)")
    parser.add_argument("--check-every", type=int, default=2560, help="renders between quick checks (0: none)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per held-out prompt in the final pass")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--splits", action="store_true", help="also evaluate both splits with diversity")
    parser.add_argument("--train-seeds", type=int, default=2, help="seeds per training prompt for --splits")
    parser.add_argument("--evaluate-only", action="store_true", help="evaluate --out/policy; train nothing")
    args = parser.parse_args()

    given = resolve("shapes", overrides=args.overrides)  # the batch, checked before anything is written
    if args.renders % (given.prompts_per_iteration * given.samples_per_prompt):
        batch = given.prompts_per_iteration * given.samples_per_prompt
        parser.error(f"--renders {args.renders} is not a multiple of the batch ({batch})")  # one line, exit 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, name in (("train", "shapes-train"), ("test", "shapes-test")):
        files[split] = out / f"prompts-{split}.txt"
        files[split].write_text("\n".join(relation_prompts(name)) + "\n")
    overrides = [*args.overrides, f"prompts={files['train']}", f"eval_prompts={files['test']}"]
    overrides += [f"eval_seeds={args.seeds}", f"threads={args.threads}"]
    config = resolve("shapes", overrides=overrides)
    batch = config.prompts_per_iteration * config.samples_per_prompt
    # The run's length is what the schedule (cosine learning rate) spreads over.
    config.iterations = args.renders // batch

    if args.evaluate_only:
        print(json.dumps(splits(args, config, saved_policy(args, out))))
        return
    trainer = Trainer(config)
    if args.policy == "oracle":
        trainer.policy = RoleFeaturePolicy.for_backend(trainer.backend, grid=config.grid)
        trainer.optimizer = torch.optim.AdamW(
            trainer.policy.trained, lr=config.lr, betas=(config.adam_beta1, 0.999), weight_decay=config.weight_decay
        )
    quick = trainer.eval_prompts[::4]
    curve, rows, start = [], [], time.perf_counter()
    every = args.check_every // batch if args.check_every else 0
    while trainer.iteration < config.iterations:
        rows.append(trainer.step())
        if every and trainer.iteration % every == 0:
            point = {"renders": trainer.iteration * batch, "train_correct": round(rows[-1]["train_correct"], 3)}
            point.update(quick_check(trainer, quick), mu_rms=round(rows[-1]["mu_rms"], 3))
            curve.append(point)
            print(json.dumps(point), flush=True)
    train_seconds = time.perf_counter() - start
    trainer.policy.save_pretrained(out / "policy")

    final = trainer.evaluate()
    keep = ("delta_correct", "own_minus_other_correct", "own_minus_mirror_correct")
    result = {
        "policy": args.policy,
        "overrides": dict(o.split("=", 1) for o in args.overrides),
        "renders": config.iterations * batch,
        "train_seconds": round(train_seconds),
        "held_out_pairs": len(trainer.eval_prompts) * args.seeds,
        "correct_standard": round(final["eval_standard_correct"], 3),
        "correct_policy": round(final["eval_correct"], 3),
    }
    final["eval_delta_correct"] = final["eval_correct"] - final["eval_standard_correct"]
    for key in keep:
        name = f"eval_{key}"
        result[key] = [round(final[name], 3), round(final[f"{name}_ci95_low"], 3), round(final[f"{name}_ci95_high"], 3)]
    last = rows[-10:]
    for key in ("train_correct", "mu_rms", "clipfrac", "approx_kl", "policy_kl"):
        result[f"last10_{key}"] = round(float(np.mean([r[key] for r in last])), 4)
    if args.splits:
        result["splits"] = splits(args, config, trainer.policy)
    print(json.dumps({**result, "curve": curve}))


def saved_policy(args: argparse.Namespace, out: Path) -> NoisePolicy:
    """The policy a run of this script saved (the oracle's maps into a fresh ``RoleFeaturePolicy``)."""
    if args.policy != "oracle":
        return load_policy(out)
    from noiseppo.backends import get_backend

    policy = RoleFeaturePolicy.for_backend(get_backend("shapes", None, "ddim"), grid=8)
    saved = load_file(out / "policy" / "diffusion_pytorch_model.safetensors")
    with torch.no_grad():  # its maps and bias: the inherited layers are unused (and their readout may differ)
        policy.maps.copy_(saved["maps"])
        policy.bias.copy_(saved["bias"])
    return policy.requires_grad_(False)


def splits(args: argparse.Namespace, config, policy: NoisePolicy) -> dict:
    """Held-out and training relation prompts, kept apart: Δ, own - other, own - mirror, diversity."""
    from specificity_study import evaluate

    rounded = {}
    for split, name, seeds in (("held_out", "shapes-test", args.seeds), ("train", "shapes-train", args.train_seeds)):
        row = evaluate(policy, config, relation_prompts(name), seeds)
        rounded[split] = {k: [round(x, 3) for x in v] if isinstance(v, list) else round(v, 3) for k, v in row.items()}
    return rounded


if __name__ == "__main__":
    main()
