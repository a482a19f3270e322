"""Capacity check: can a policy configuration *represent* what prompts need, and carry it to held-out prompts?

    python experiments/capacity_check.py [KEY=VALUE ...] [--teacher role] [--steps 1500] [--lr 1e-3]
    python experiments/capacity_check.py --teacher search --train-search RUN_A --test-search RUN_B [KEY=VALUE ...]
    python experiments/capacity_check.py --policy teacher      # the teacher itself: the best possible binding

No rendering and no RL: the policy that ``noiseppo train`` builds for the ``shapes`` preset with the
``KEY=VALUE`` overrides (its policy fields: readout, query_std, grid, width, feature_mlp,
prompt_blind, ...) is fitted by full-batch Adam on the MSE between its mean, average-pooled to the
teacher's grid, and a teacher map per training prompt. A supervised fit is the cheapest filter before
any PPO run (docs/noise_ppo.md, "Binding words to places"). Teachers:

- ``role``: the role-layout teacher of every Shapes relation prompt (``experiments/binding.py``),
  fitted on the ``shapes-train`` relation prompts and tested on the ``shapes-test`` ones;
- ``search``: the per-prompt searched means of ``noiseppo search`` (the ``cells`` of its
  ``latents.safetensors``, any backend), fitted on the prompts of ``--train-search`` and tested on
  those of ``--test-search``.

Reported on the held-out prompts: R² against the teacher, and binding, the fraction of held-out
prompts whose fitted map is nearer its own teacher than its mirrored prompt's (``noiseppo.prompts.
mirror_prompt``; a prompt whose mirror has no teacher, or the same one, cannot count). For the role
teacher, 5 of the 14 held-out object pairs share one colour, so 0.643 is the best possible.
``binding_other`` is the same against another prompt's teacher (a fixed derangement). The last
printed line is one JSON object, with binding and R² along the fit (``curve``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from binding import relation_prompts, role_teacher
from safetensors.torch import load_file

from noiseppo.backends import get_backend
from noiseppo.configs.presets import resolve
from noiseppo.evaluation.specificity import other_prompts
from noiseppo.policy import NoisePolicy
from noiseppo.prompts import mirror_prompt

FROZEN = {"none": (), "attention": ("queries", "token_in", "pooled_in", "norm", "to_q", "to_kv", "to_out", "mlp")}
"""``--freeze``: parameter-name prefixes kept at their initial values (``attention``: fit the readout alone
on the untrained attention's features)."""


def searched_teachers(folder: str) -> dict[str, torch.Tensor]:
    """prompt -> its searched cell means (C, grid, grid), from a ``noiseppo search`` output folder."""
    root = Path(folder)
    cells = load_file(root / "latents.safetensors")["cells"]
    prompts = [row["prompt"] for row in json.loads((root / "search.json").read_text())["prompts"]]
    return dict(zip(prompts, cells, strict=True))


def teachers(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(training teachers, held-out teachers), each prompt -> (C, grid, grid)."""
    if args.teacher == "role":
        return tuple({p: role_teacher(p, args.grid) for p in relation_prompts(name)} for name in args.sets)
    return searched_teachers(args.train_search), searched_teachers(args.test_search)


def r_squared(fit: torch.Tensor, target: torch.Tensor) -> float:
    return float(1 - ((fit - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def binding(fit: torch.Tensor, prompts: list[str], table: dict[str, torch.Tensor]) -> dict[str, float | int]:
    """Fractions of ``prompts`` whose fit is strictly nearer their own teacher than their mirror's
    (and another prompt's), and how many prompts could count at all (own and partner teachers differ)."""
    own = torch.stack([table[p] for p in prompts])
    out: dict[str, float | int] = {}
    partners = {"mirror": [mirror_prompt(p) for p in prompts], "other": other_prompts(prompts)}
    for side, names in partners.items():
        near = countable = 0
        for i, partner in enumerate(names):
            if partner is None or partner not in table:
                continue
            distance_own = float(((fit[i] - own[i]) ** 2).sum())
            distance_partner = float(((fit[i] - table[partner]) ** 2).sum())
            near += distance_own < distance_partner
            countable += not torch.equal(own[i], table[partner])
        key = "binding" if side == "mirror" else "binding_other"
        out[key] = round(near / len(prompts), 3)
        out[f"{key}_best"] = round(countable / len(prompts), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides of the shapes preset")
    parser.add_argument("--teacher", choices=("role", "search"), default="role")
    parser.add_argument("--train-search", help="a noiseppo search folder of the training prompts")
    parser.add_argument("--test-search", help="a noiseppo search folder of the held-out prompts")
    parser.add_argument(
        "--policy",
        choices=("config", "teacher"),
        default="config",
        help="'teacher': score the teacher maps themselves (the best possible binding)",
    )
    parser.add_argument("--freeze", choices=tuple(FROZEN), default="none")
    parser.add_argument("--steps", type=int, default=1500, help="full-batch Adam steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the policy's initialisation")
    parser.add_argument("--curve-every", type=int, default=250, help="steps between points of the curve")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.teacher == "search" and not (args.train_search and args.test_search):
        parser.error("--teacher search needs --train-search and --test-search")  # one line, exit 2
    args.sets = ("shapes-train", "shapes-test")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = resolve("shapes", overrides=args.overrides)
    args.grid = config.grid
    train_table, test_table = teachers(args)
    train, test = list(train_table), list(test_table)
    target_train, target_test = torch.stack(list(train_table.values())), torch.stack(list(test_table.values()))
    header = {"teacher": args.teacher, "policy": args.policy, "train_prompts": len(train), "test_prompts": len(test)}
    if args.policy == "teacher":
        row = {**header, "test_r2": 1.0, **binding(target_test, test, test_table)}
        print(json.dumps(row))
        return

    backend = get_backend(config.backend, config.model or None, config.scheduler)
    torch.manual_seed(args.seed)  # as the trainer seeds the policy's hidden layers
    cond_train, cond_test = backend.encode(train), backend.encode(test)
    policy = NoisePolicy.for_config(backend, config, cond_train)
    frozen = FROZEN[args.freeze]
    trained = [p for name, p in policy.named_parameters() if not name.startswith(frozen)]
    optimizer = torch.optim.Adam(trained, lr=args.lr)
    grid = target_train.shape[-1]

    def fit(conditioning) -> torch.Tensor:  # the policy's mean on the teacher's grid
        return F.adaptive_avg_pool2d(policy(conditioning)[0], grid)

    curve, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        loss = F.mse_loss(fit(cond_train), target_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.curve_every == 0 or step == args.steps:
            with torch.no_grad():
                y = fit(cond_test)
            point = {"step": step, "test_r2": round(r_squared(y, target_test), 3), **binding(y, test, test_table)}
            curve.append(point)
            print(json.dumps(point), flush=True)
    with torch.no_grad():
        train_r2 = r_squared(fit(cond_train), target_train)
    overrides = {k: v for k, v in (o.split("=", 1) for o in args.overrides)}
    row = {**header, "overrides": overrides, "freeze": args.freeze, "steps": args.steps, "lr": args.lr}
    row.update(train_r2=round(train_r2, 3), **{k: v for k, v in curve[-1].items() if k != "step"})
    row.update(trained_parameters=sum(p.numel() for p in trained), seconds=round(time.perf_counter() - start, 1))
    print(json.dumps({**row, "curve": curve}))


if __name__ == "__main__":
    main()
