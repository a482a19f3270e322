"""``noiseppo``: argument parsing and error reporting; the logic lives in the modules.

A ``UserError`` becomes one line on stderr (``noiseppo: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from noiseppo.errors import DEBUG_ENV, UserError, debugging
from noiseppo.storage.interrupt import EXIT_STATUS, Interrupted  # standard library only: here before any Ctrl-C

if TYPE_CHECKING:
    import numpy as np


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit 2 like every other user error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} --help')")


def _int_at_least(minimum: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return convert


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got '{text}'")
    return value


def _prompts_from_args(args: argparse.Namespace) -> list[str]:
    from noiseppo.prompts import load_prompts

    if bool(args.prompt) == bool(args.prompts):
        raise UserError("give either --prompt (repeatable) or --prompts SET_OR_FILE")
    return list(args.prompt) if args.prompt else load_prompts(args.prompts)


def _load_image(path: str) -> np.ndarray:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # Transparent pixels lie on the Shapes world's white, not on black.
            rgba = im.convert("RGBA")
            pixels = np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: cannot read image ({e.__class__.__name__})") from None
    return pixels


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from noiseppo.rewards import get_reward

    reward = get_reward(args.reward)
    if len(args.prompt) not in (1, len(args.images)):
        raise UserError(
            f"give one --prompt for all images or one per image; got {len(args.prompt)} for {len(args.images)} images"
        )
    prompts = args.prompt * len(args.images) if len(args.prompt) == 1 else args.prompt
    size = getattr(reward, "image_size", None)  # (height, width) a reward insists on, if any
    pixels = []
    for path in args.images:
        image = _load_image(path)
        if size is not None and image.shape[:2] != size:
            h, w = image.shape[:2]
            raise UserError(
                f"{path}: image is {w}x{h}, reward '{args.reward}' reads {size[1]}x{size[0]} (it never resizes)"
            )
        pixels.append(image)
    if len({p.shape for p in pixels}) > 1:
        raise UserError("images of different sizes cannot be scored in one call")
    batch = np.stack(pixels).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    details = getattr(reward, "details", None)
    if details:
        rows = details(batch, prompts)
    else:  # the reward contract: a float tensor, and checked scores
        import torch

        from noiseppo.rewards.scoring import score_batch

        rows = [{"score": float(s)} for s in score_batch(reward, torch.from_numpy(batch), prompts)]
    for path, row in zip(args.images, rows, strict=True):
        print(json.dumps({"image": path, **row}))
    return 0


def cmd_shapes_render(args: argparse.Namespace) -> int:
    from noiseppo.sampling.seeds import sample_seed
    from noiseppo.shapes.grammar import parse
    from noiseppo.shapes.render import render_scene
    from noiseppo.storage.files import new_output_dir

    prompts = [parse(p).text for p in _prompts_from_args(args)]
    with new_output_dir(args.out) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i, prompt in enumerate(prompts):
            for j in range(args.n):
                seed = sample_seed(args.seed, i, j)
                image, objects = render_scene(prompt, seed)
                name = f"images/{len(lines):04d}.png"
                image.save(tmp / name)
                scene = [{"colour": o.colour, "shape": o.shape, "box": list(o.box)} for o in objects]
                lines.append(json.dumps({"file": name, "prompt": prompt, "seed": seed, "objects": scene}))
        (tmp / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} images and scenes.jsonl to {args.out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.evaluation.grid import Block, Cell, grid_pages, save_pages
    from noiseppo.images import to_pil
    from noiseppo.rewards.shapes import ShapesReward
    from noiseppo.sampling.render import RenderSpec, sample
    from noiseppo.sampling.render_and_score import score_side
    from noiseppo.storage.files import new_output_dir

    prompts = _prompts_from_args(args)
    policy = None
    if args.policy:
        from noiseppo.policy import load_policy

        policy = load_policy(args.policy)
    trained = _backend_defaults_from_policy(args)
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    latents_fn = None
    if policy is not None:
        from noiseppo.policy import check_policy

        check_policy(policy, backend)
        latents_fn = policy.noise_to_latents(args.policy_mode)
    guidance = resolve_guidance(backend, args.guidance)
    _warn_if_mismatched(trained, [args.steps], guidance, args.scheduler, backend.default_guidance)
    with new_output_dir(args.out) as tmp:
        spec = RenderSpec(args.steps, guidance, args.n, args.seed, args.batch, args.overlap_scoring)
        verdicts = None
        if backend.name == "shapes":  # the verifier's verdicts, each chunk checked while the next one renders
            verdicts, samples = score_side(backend, ShapesReward(), prompts, spec, latents_fn)
        else:
            samples = sample(backend, prompts, spec, latents_fn)
        (tmp / "images").mkdir()
        rows, blocks = [], []
        for k, s in enumerate(samples):
            name = f"images/{k:04d}.png"
            pil = to_pil(s.image)
            pil.save(tmp / name)
            row = {"file": name, "prompt": s.prompt, "seed": s.seed, "steps": args.steps, "guidance": guidance}
            if policy is not None:
                row.update(policy=args.policy, policy_mode=args.policy_mode)
            cell = Cell(pil, f"sample {s.sample_index}")
            if verdicts is not None:
                correct, partial = bool(verdicts["correct"][k]), float(verdicts["partial"][k])
                row.update(correct=correct, partial=round(partial, 4))
                cell.correct, cell.score = correct, partial
            rows.append(json.dumps(row))
            if k == 0 or samples[k - 1].prompt_index != s.prompt_index:
                blocks.append(Block(s.prompt, []))
            blocks[-1].cells.append(cell)
        (tmp / "samples.jsonl").write_text("\n".join(rows) + "\n")
        noise = f"policy {args.policy} ({args.policy_mode})" if policy is not None else "standard noise (no policy)"
        title = f"{noise}, {args.steps} steps, guidance {guidance:g}, seed {args.seed}"
        grids = save_pages(grid_pages(blocks, title), tmp, "grid")
    summary = f"wrote {len(samples)} images, samples.jsonl and {grids} to {args.out}"
    if verdicts is not None:
        summary += f"; verifier: correct {np.mean(verdicts['correct']):.3f}"
        summary += f", partial {np.mean(verdicts['partial']):.3f}"
    print(summary)
    return 0


def _warn_if_mismatched(trained: dict, steps: list[int], guidance: float, scheduler: str, default: float) -> None:
    from noiseppo.evaluation.mismatch import mismatch_warning

    warning = mismatch_warning(trained, steps, guidance, scheduler, default)
    if warning:
        print(warning, file=sys.stderr)


def _add_guidance_argument(parser: argparse.ArgumentParser) -> None:
    """--guidance of the commands that render with a policy or the model's own noise (None: resolved later)."""
    parser.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale (1.0: none; default: the policy's, else the model's)",
    )


def _config_parser(sub, name: str, config: type, summary: str, description: str) -> argparse.ArgumentParser:
    """The subcommand ``name``, with one flag per field of the dataclass ``config`` (its docstrings as --help)."""
    from noiseppo.dataclass_args import add_dataclass_arguments

    parser = sub.add_parser(name, help=summary, description=description)
    add_dataclass_arguments(parser, config)
    return parser


def _backend_defaults_from_policy(args: argparse.Namespace) -> dict:
    """Backend settings a policy was trained with fill in the flags the user left out;
    returns that training config ({} without a policy or a saved config)."""
    from noiseppo.configs.train import TrainConfig
    from noiseppo.storage.shipped import training_config

    trained = (training_config(args.policy) if args.policy else None) or {}
    defaults = TrainConfig()  # what a run trained without these settings used
    for key in ("backend", "model", "scheduler", "steps"):
        if getattr(args, key) is None:
            setattr(args, key, trained.get(key) or getattr(defaults, key) or None)
    if args.guidance is None and trained.get("guidance") is not None:  # None: the backend's default
        args.guidance = float(trained["guidance"])
    return trained


def cmd_eval(args: argparse.Namespace) -> int:
    import time

    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.configs.train import TrainConfig
    from noiseppo.evaluation.evaluate import evaluate_steps, format_table, summarise, write_eval
    from noiseppo.policy import check_policy, load_policy
    from noiseppo.prompts import load_prompts
    from noiseppo.rewards import get_reward
    from noiseppo.sampling.render import RenderSpec
    from noiseppo.storage.files import new_output_dir

    policy = load_policy(args.policy)
    trained = _backend_defaults_from_policy(args)
    reward_name = args.reward or trained.get("reward") or TrainConfig.reward
    reward = get_reward(reward_name)
    prompts = load_prompts(args.prompts)
    try:
        steps = [int(s) for s in args.steps.split(",")] if isinstance(args.steps, str) else [int(args.steps)]
    except ValueError:
        raise UserError(f"--steps: expected comma-separated whole numbers, got '{args.steps}'") from None
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    check_policy(policy, backend)
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    guidance = resolve_guidance(backend, args.guidance)
    _warn_if_mismatched(trained, steps, guidance, args.scheduler, backend.default_guidance)
    header = {
        "policy": args.policy,
        "backend": args.backend,
        "model": args.model,
        "scheduler": args.scheduler,
        "reward": reward_name,
        "prompts": args.prompts,
        "seeds": args.seeds,
        "seed": args.seed,
        "guidance": guidance,
        "bootstrap": args.bootstrap,
    }
    rows, results = [], []
    with new_output_dir(args.out) as tmp:
        for s in steps:
            start = time.time()
            spec = RenderSpec(s, guidance, args.seeds, args.seed, args.batch, args.overlap_scoring)
            result = evaluate_steps(backend, policy, reward, prompts, spec)
            results.append(result)
            rows.extend(summarise(result, args.bootstrap))
            print(f"steps {s}: {time.time() - start:.0f} s", file=sys.stderr)
        write_eval(tmp, header, rows, results)
    print(format_table(rows))
    from noiseppo.report.page import REPORT, write_or_warn

    page = f" and {REPORT}" if write_or_warn([Path(args.out)], Path(args.out) / REPORT) else ""
    print(f"wrote eval.json, gain.png, grid_steps*.png{page} to {args.out}")
    return 0


# -- noiseppo report: parsing here, the page in noiseppo.report.page --------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    """Write one HTML file (images inline, no script, nothing fetched) showing a run (curves, held-out
    table, standard against policy images, config), its evaluations (per-step table, gain plot,
    grids) and comparisons (every baseline's row). A run still in progress gets a page of what it
    has written so far."""
    from noiseppo.report.page import REPORT, folder_kind, write

    folders = [Path(f) for f in args.folders]
    for folder in folders:  # one line for a folder that is neither, before any work
        folder_kind(folder)
    out = Path(args.out) if args.out else folders[0] / REPORT
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the report's file name, e.g. {out / REPORT}")
    write(folders, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): open it in a browser")
    return 0


# -- end of noiseppo report --


# -- noiseppo golden: parsing here, the work in noiseppo.analysis.golden_run --------------------------
def _golden_int_list(flag: str, text: str, count: int | None = None) -> list[int]:
    """A comma-separated list of whole numbers >= 1 (``count`` of them, or 1 for all)."""
    try:
        values = [int(t) for t in text.split(",")]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated whole numbers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise UserError(f"{flag}: every value must be >= 1, got '{text}'")
    if count is not None and len(values) == 1:
        values *= count
    if count is not None and len(values) != count:
        raise UserError(f"{flag}: give one number for every step count or one per step count ({count}), got '{text}'")
    return values


def cmd_golden(args: argparse.Namespace) -> int:
    from noiseppo.analysis import golden_run
    from noiseppo.storage.files import new_output_dir

    if args.from_dir:
        given = [f"--{f}" for f in ("prompts", "noises", "steps", "policy") if getattr(args, f) is not None]
        if given:
            raise UserError(f"--from re-analyses a previous run's renders; {', '.join(given)} cannot change them")
        header, matrices, policy_raw, policy_info = golden_run.merge_cached(args.from_dir)
        noises = header["noises"]
    else:
        steps = _golden_int_list("--steps", args.steps or "1,2,4,8,16")
        if len(set(steps)) != len(steps):
            raise UserError(f"--steps: a step count is repeated in '{args.steps}'")
        noises = _golden_int_list("--noises", args.noises or "64", len(steps))
        if min(noises) < 2:
            raise UserError(f"--noises: need at least 2 noises to compare, got {min(noises)}")
    if not 1 <= args.top_k <= min(noises) // 2:
        raise UserError(f"--top-k: must be between 1 and half the fewest noises ({min(noises) // 2}), got {args.top_k}")
    if not args.from_dir:
        header, matrices, policy_raw, policy_info = _golden_render(args, steps, noises)
    header.update(top_k=args.top_k, splits=args.splits, bootstrap=args.bootstrap, permutations=args.permutations)
    with new_output_dir(args.out) as tmp:
        results, policy = golden_run.analyse_all(
            header,
            header["prompt_list"],
            matrices,
            policy_raw,
            args.top_k,
            args.splits,
            args.bootstrap,
            args.permutations,
        )
        policy = None if policy is None else {**policy_info, **policy}
        golden_run.write_outputs(tmp, header, results, policy, matrices, policy_raw, header["latent_shape"])
    print(golden_run.format_table(results))
    # One summary line: per step count the noise's share of the variance and the top-k noises' gain on
    # held-out prompts; every other figure is in golden.json beside the matrices, heatmap.png, steps.png
    # and best_noises_steps*.safetensors.
    line = golden_run.summary_line(header, results, policy)

    def figure(value: float | None, ci: list, sign: str = "") -> str:
        if value is None:
            return "n/a"
        return f"{value:{sign}.3f} [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]" if None not in ci else f"{value:{sign}.3f}"

    parts = [
        f"{k}: noise share {figure(v['noise_share'], v['noise_share_ci95'])}, top-{args.top_k} gain "
        f"{figure(v['topk_gain'], v['topk_gain_ci95'], '+')}"
        for k, v in line.items()
        if k.startswith("steps")
    ]
    print(f"wrote {Path(args.out) / 'golden.json'} ({line['metric']}): " + "; ".join(parts))
    return 0


def _golden_render(args: argparse.Namespace, steps: list[int], noises: list[int]) -> tuple:
    """Check every input, then render: (header, matrices, policy scores, policy settings)."""
    from noiseppo.analysis import golden_run
    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.policy import check_policy, load_policy
    from noiseppo.prompts import load_prompts
    from noiseppo.rewards import get_reward
    from noiseppo.sampling.render import RenderSpec

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    prompts = load_prompts(args.prompts or "shapes-test")
    if len(prompts) < 2:
        raise UserError(f"--prompts: need at least 2 prompts to compare noises across, got {len(prompts)}")
    policy = load_policy(args.policy) if args.policy else None
    args.steps = args.steps or "1,2,4,8,16"  # so that the policy's training steps do not replace it below
    trained = _backend_defaults_from_policy(args)
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    if policy is not None:
        check_policy(policy, backend)
        golden_run.partners(golden_run.prompt_templates(prompts), args.seed)  # refuses a template of one prompt
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    reward = get_reward(args.reward)
    guidance = resolve_guidance(backend, args.guidance)
    policy_steps = int(trained.get("steps", 4))
    matrices, policy_raw, partners = golden_run.render_all(
        backend,
        reward,
        prompts,
        dict(zip(steps, noises, strict=True)),
        RenderSpec(policy_steps, guidance, args.policy_seeds, args.seed, args.batch),
        policy,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    metrics = list(next(iter(matrices.values())))
    header = {
        "backend": args.backend,
        "model": args.model,
        "scheduler": args.scheduler,
        "reward": args.reward,
        "prompts": args.prompts or "shapes-test",
        "n_prompts": len(prompts),
        "seed": args.seed,
        "guidance": guidance,
        "steps": steps,
        "noises": noises,
        "noise_seeds": golden_run.noise_seeds(args.seed, max(noises)),
        "latent_shape": list(backend.latent_shape),
        "metrics": metrics,
        "headline_metric": golden_run.headline_metric(metrics),
        "prompt_list": prompts,
        "templates": golden_run.prompt_templates(prompts),
    }
    policy_info = None
    if policy is not None:
        policy_info = {"name": args.policy, "steps": policy_steps, "seeds": args.policy_seeds, "partners": partners}
    return header, matrices, policy_raw, policy_info


def cmd_train_base(args: argparse.Namespace) -> int:
    from noiseppo.configs.train import ShapesModelTrainConfig
    from noiseppo.dataclass_args import dataclass_from_args
    from noiseppo.training.shapes_base import train_shapes_model

    config = dataclass_from_args(ShapesModelTrainConfig, args)
    model = train_shapes_model(config, Path(args.out), resume=args.resume, device=args.device)
    print(f"model written to {model}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from noiseppo.configs.presets import DEFAULT_PRESET, resolve

    if not args.resume:  # a mistyped preset or key answers before torch loads (seconds)
        if not args.out:
            raise UserError("give --out RUN_DIR (or --resume RUN_DIR)")
        flags = {f: getattr(args, f) for f in TRAIN_FLAGS}
        config = resolve(args.preset or DEFAULT_PRESET, args.config, args.overrides, flags)
        from noiseppo.prompts import load_prompts
        from noiseppo.rewards import check_reward_name

        check_reward_name(config.reward)  # and the prompt files and model folder, each one line, before torch loads
        for prompts in filter(None, (config.prompts, config.eval_prompts)):
            load_prompts(prompts)
        from noiseppo.storage.local_paths import checked_model

        checked_model(config.model)
    from noiseppo.report.page import TrainPage
    from noiseppo.training.trainer import train

    if args.resume:
        from noiseppo.training.extend import RunFinished, resume_iterations

        given = [f"--{f}" for f in ("out", "config") if getattr(args, f)] + (["--preset"] if args.preset else [])
        given += [f"--{f}" for f in TRAIN_FLAGS if f != "iterations" and getattr(args, f) is not None]
        iterations = resume_iterations(args.overrides, args.iterations, given)  # the one setting it takes
        try:
            run = train(None, args.resume, resume=True, iterations=iterations, callbacks=[TrainPage()])
        except RunFinished as done:
            print(done)
            return 0
    else:
        run = train(config, args.out, callbacks=[TrainPage()])
    print(f"policy written to {run / 'policy'}")
    return 0


def cmd_reward_server(args: argparse.Namespace) -> int:
    from noiseppo.rewards import get_reward
    from noiseppo.rewards.base import redacted
    from noiseppo.rewards.http import TOKEN_ENV, checked_token
    from noiseppo.rewards.server import is_loopback, make_server

    # Checked before the reward loads (seconds for a large model), and never printed.
    token = checked_token(args.token, "--token")
    if token is None:
        token = checked_token(os.environ.get(TOKEN_ENV), TOKEN_ENV)
    reward = get_reward(args.reward)
    server = make_server(
        reward,
        args.host,
        args.port,
        token=token,
        max_body_mb=args.max_body_mb,
        read_timeout=args.read_timeout,
        queue_timeout=args.queue_timeout,
    )
    host, port = server.server_address[:2]
    if token is None and not is_loopback(args.host):
        print(
            f"noiseppo: warning: serving on {args.host} without a token: anyone who can reach port {port} can "
            f"use this reward (give --token or set {TOKEN_ENV})",
            file=sys.stderr,
            flush=True,
        )
    needs = "bearer token required; " if token else ""
    shown = redacted(args.reward)  # a reward URL's fragment may hold its token
    print(f"serving reward '{shown}' at http://{host}:{port}/ ({needs}GET /health; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# -- noiseppo search, ddpo and compare: the work in noiseppo.baselines (search, ddpo, compare) --
def cmd_search(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.baselines.search import check_search, search, write_search
    from noiseppo.configs.baselines import SearchConfig
    from noiseppo.configs.train import TrainConfig
    from noiseppo.dataclass_args import dataclass_from_args
    from noiseppo.rewards import get_reward
    from noiseppo.rewards.base import redacted
    from noiseppo.storage.files import new_output_dir

    config = dataclass_from_args(SearchConfig, args)
    check_search(config)  # a budget below one generation: refused before anything loads
    prompts = _prompts_from_args(args)
    reward = get_reward(args.reward)
    name, scheduler = args.backend or TrainConfig.backend, args.scheduler or TrainConfig.scheduler
    backend = get_backend(name, args.model, scheduler, args.device, args.dtype)
    backend.encode(list(prompts))  # refuse bad prompts before any work or writing
    config = dataclasses.replace(config, guidance=resolve_guidance(backend, config.guidance))  # search.json's
    if args.threads:
        torch.set_num_threads(args.threads)
    with new_output_dir(args.out) as tmp:
        result = search(backend, reward, prompts, config)
        header = {"backend": backend.name, "model": args.model, "reward": redacted(args.reward)}
        write_search(tmp, result, prompts, config, header)
    first, last = result.log[0], result.log[-1]
    print(
        f"searched {len(prompts)} prompt(s), {result.renders} renders each: mean reward of a generation's samples "
        f"{first['reward_mean']:.3f} (first) -> {last['reward_mean']:.3f} (last); kept: each prompt's best render "
        f"of the whole search (mean reward {last['best_reward_mean']:.3f}), its latents in latents.safetensors; "
        f"wrote latents.safetensors, images/, grid.png and search.json to {args.out}"
    )
    return 0


def cmd_ddpo(args: argparse.Namespace) -> int:
    import dataclasses

    from noiseppo.configs.baselines import DDPOConfig
    from noiseppo.dataclass_args import dataclass_from_args

    if args.resume:  # the run's own settings; only its length and the thread count may change
        named = [f.name for f in dataclasses.fields(DDPOConfig) if f.name not in ("iterations", "threads")]
        given = [
            f"--{k.replace('_', '-')}"
            for k in ("out", "model", "backend", "reward", "prompts", "device", "dtype", *named)
            if getattr(args, k) is not None
        ] + [o for o in args.overrides]
        if given:
            raise UserError(
                f"--resume continues with the run's saved settings: it takes --iterations and --threads, not {given[0]}"
            )
        from noiseppo.baselines.ddpo_resume import resume_ddpo

        out = Path(args.resume)
        summary = resume_ddpo(out, args.iterations or 0, args.threads or 0)
    else:
        from noiseppo.baselines.ddpo import ddpo_settings, train_ddpo

        if not args.out:
            raise UserError("give --out RUN_DIR (or --resume RUN_DIR)")
        out = Path(args.out)
        given = ("backend", "reward", "prompts", "device", "dtype")  # train's flags, as the preset's keys
        flags = [f"{k}={getattr(args, k)}" for k in given if getattr(args, k) is not None]
        config = dataclass_from_args(DDPOConfig, args)
        cfg = ddpo_settings(config, (*args.overrides, *flags))
        if cfg.backend == "diffusers":  # an SD pipeline with LoRA: its own run folder and resume
            from noiseppo.baselines.ddpo_diffusers import train_ddpo_diffusers

            summary = train_ddpo_diffusers(config, cfg, out, str(args.model or cfg.model))
        else:
            summary = train_ddpo(config, out, args.model, overrides=(*args.overrides, *flags))
    from noiseppo.baselines.ddpo import summary_line

    lora = "lora_parameters" in summary  # the diffusers run's adapters; the Shapes run's whole model
    print(f"LoRA weights written to {out / 'lora'}" if lora else f"tuned model written to {out / 'model'}")
    print(summary_line(summary, out))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from noiseppo.comparison.config import compare_config, prepare
    from noiseppo.storage.files import new_output_dir

    given = vars(args)  # the flags left out are None: CompareConfig's defaults
    try:
        if args.search_curve is not None:
            given["search_curve"] = tuple(int(b) for b in args.search_curve.split(",")) if args.search_curve else ()
    except ValueError:
        raise UserError(f"--search-curve: expected comma-separated whole numbers, got '{args.search_curve}'") from None
    config = compare_config(given, args.overrides)
    prepare(config)  # a bad method, key, prompt file or reward name: refused before torch loads
    from noiseppo.comparison.runner import run_compare
    from noiseppo.comparison.table import format_table

    with new_output_dir(args.out) as tmp:
        body = run_compare(config, tmp, say=lambda line: print(line, file=sys.stderr, flush=True))
    from noiseppo.report.page import REPORT, write_or_warn

    if write_or_warn([Path(args.out)], Path(args.out) / REPORT):  # the table and compare.png as a page
        print(f"report: {Path(args.out) / REPORT}")
    print(format_table(body))
    # One summary line, as one JSON object (the README's figures cite it): each method's score and
    # where every other figure is (against best-of-N, against DDPO, the curves).
    scores = {r["method"]: round(r[body["metric"]], 4) for r in body["rows"]}
    print(json.dumps({"wrote": str(Path(args.out) / "compare.json"), "metric": body["metric"], "rows": scores}))
    return 0


# -- end of noiseppo search, ddpo and compare --


def cmd_list(args: argparse.Namespace) -> int:
    from noiseppo.backends import BACKENDS
    from noiseppo.configs.presets import presets
    from noiseppo.prompts import PROMPT_SETS
    from noiseppo.rewards import REWARDS
    from noiseppo.storage.shipped import shipped_policies

    registries = {"prompts": PROMPT_SETS, "rewards": REWARDS, "backends": BACKENDS}
    if args.what in registries:
        listing = {name: description for name, (_, description) in registries[args.what].items()}
    else:
        listing = presets() if args.what == "presets" else shipped_policies()
    width = max([18, *(len(name) + 2 for name in listing)])
    for name, description in listing.items():
        print(f"{name:<{width}}{description}")
    if args.what == "rewards":  # the forms a reward takes besides a registered name
        print(f"{'module:function':<{width}}your own function from a module (README: Your model, your reward)")
        print(f"{'http://HOST:PORT/PATH':<{width}}a reward server (noiseppo reward-server, docs/reward_server.md)")
        print(f"{'0.5*A+1.0*B':<{width}}a weighted sum of rewards")
    return 0


def _add_backend_arguments(parser: argparse.ArgumentParser, takes_policy: bool = True) -> None:
    default = "the policy's, else shapes" if takes_policy else "shapes"  # search has no --policy
    parser.add_argument("--backend", help=f"a registered backend (default: {default})")
    parser.add_argument("--model", help="model folder or hub id (default: the backend's own)")
    parser.add_argument(
        "--scheduler",
        help="ddim, euler, dpm, or default: the model's own (DDIM for Shapes, the pipeline's for diffusers; "
        "sd3 and flux take only default)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")


TRAIN_FLAGS = ("backend", "model", "reward", "prompts", "steps", "iterations", "device", "dtype", "seed")
"""The settings people change most, also given as plain ``noiseppo train`` flags."""


def _add_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")


def _add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_int_at_least(0), default=0, help="torch CPU threads (0: torch's default)")


def _add_overlap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-overlap-scoring",
        dest="overlap_scoring",
        action="store_false",
        help="score each batch after it renders, on the main thread (default: while the next batch renders)",
    )


def _config_help() -> str:
    from noiseppo.configs.train import TrainConfig
    from noiseppo.dataclass_args import field_docs

    lines = ["config keys (YAML file or KEY=VALUE; defaults from the preset, see 'noiseppo list presets'):"]
    for key, doc in field_docs(TrainConfig).items():
        lines.append(f"  {key:<22}{doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    import noiseppo
    from noiseppo.configs.train import ShapesModelTrainConfig
    from noiseppo.dataclass_args import add_dataclass_arguments

    # The package's docstring says what noiseppo does; this module's says what cli.py does.
    parser = _Parser(prog="noiseppo", description=noiseppo.__doc__)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback of its cause (a reward's, a backend's) before the one line; "
        "anywhere on the line, for every command (also NOISEPPO_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = sub.add_parser("score", help="score images with a reward; one JSON object per image")
    score.add_argument("--reward", default="shapes", help="a registered reward (noiseppo list rewards)")
    score.add_argument(
        "--prompt", action="append", required=True, help="the prompt: once for all images, or once per image"
    )
    score.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    score.set_defaults(func=cmd_score)

    shapes = sub.add_parser("shapes", help="the embedded Shapes world")
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True, metavar="COMMAND")
    render = shapes_sub.add_parser("render", help="render ground-truth scenes of the Shapes world")
    render.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    render.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    render.add_argument("--n", type=_int_at_least(1), default=1, help="scenes per prompt")
    render.add_argument("--seed", type=_int_at_least(0), default=0, help="base seed (see noiseppo.sampling.seeds)")
    _add_out_argument(render)
    render.set_defaults(func=cmd_shapes_render)

    train_base = shapes_sub.add_parser("train-base", help="retrain the embedded Shapes model from scratch")
    train_base.add_argument("--out", required=True, help="run folder (checkpoint/, metrics.jsonl, model/)")
    train_base.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_dataclass_arguments(train_base, ShapesModelTrainConfig)
    train_base.add_argument("--device", default="cpu", help="torch device (not saved: a run may resume elsewhere)")
    train_base.set_defaults(func=cmd_train_base)

    samp = sub.add_parser("sample", help="generate images with a frozen model, from standard noise or a noise policy's")
    samp.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    samp.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    samp.add_argument("--n", type=_int_at_least(1), default=4, help="images per prompt")
    samp.add_argument(
        "--steps", type=_int_at_least(1), help="sampling steps, 1-50 (default: the policy's training steps, else 4)"
    )
    _add_guidance_argument(samp)
    samp.add_argument("--seed", type=_int_at_least(0), default=0, help="base seed (see noiseppo.sampling.seeds)")
    samp.add_argument("--batch", type=_int_at_least(1), default=64, help="images per forward pass")
    _add_backend_arguments(samp)
    samp.add_argument("--policy", help="a run folder, a policy folder or a shipped policy (noiseppo list policies)")
    samp.add_argument(
        "--policy-mode", default="sample", choices=["sample", "mean"], help="policy latents: μ + σ ⊙ ε, or μ alone"
    )
    _add_overlap_argument(samp)
    _add_out_argument(samp)
    samp.set_defaults(func=cmd_sample)

    ev = sub.add_parser("eval", help="paired evaluation of a noise policy against standard noise")
    ev.add_argument("--policy", required=True, help="a run folder, a policy folder or a shipped policy")
    ev.add_argument("--prompts", default="shapes-test", help="a prompt set or a .txt/.jsonl file")
    ev.add_argument("--steps", help="comma-separated step counts (default: the policy's training steps)")
    ev.add_argument("--seeds", type=_int_at_least(1), default=8, help="samples per prompt")
    ev.add_argument("--seed", type=_int_at_least(0), default=0, help="base seed (pairs with noiseppo sample)")
    _add_guidance_argument(ev)
    ev.add_argument("--reward", help="a registered reward (default: the policy's training reward)")
    ev.add_argument("--batch", type=_int_at_least(1), default=128, help="images per forward pass")
    ev.add_argument("--bootstrap", type=_int_at_least(100), default=10_000, help="bootstrap resamples")
    _add_backend_arguments(ev)
    _add_overlap_argument(ev)
    _add_out_argument(ev)
    ev.set_defaults(func=cmd_eval)

    gold = sub.add_parser(
        "golden",
        help="measure the golden-noise hypothesis: shared noises x prompts (docs/golden_noise.md)",
        description="Render every prompt from the same standard noises at each step count, score every image, "
        "and measure how much of the reward is a noise main effect (golden noise), whether prompts agree on "
        "which noises are good, and whether the best noises transfer to new prompts; with --policy, how "
        "prompt-specific a policy's latents are.",
    )
    gold.set_defaults(func=cmd_golden)
    gold.add_argument("--prompts", help="a prompt set or a .txt/.jsonl file (default: shapes-test)")
    gold.add_argument("--noises", help="shared noises per step count: one number, or one per --steps (default: 64)")
    gold.add_argument("--steps", help="comma-separated step counts (default: 1,2,4,8,16)")
    gold.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="base seed: noise j is image j of noiseppo sample --seed"
    )
    _add_guidance_argument(gold)
    gold.add_argument("--reward", default="shapes", help="a registered reward (Shapes: correct and partial)")
    gold.add_argument("--batch", type=_int_at_least(1), default=256, help="images per forward pass")
    gold.add_argument("--top-k", type=_int_at_least(1), default=4, help="noises chosen in the transfer test")
    gold.add_argument("--splits", type=_int_at_least(10), default=200, help="random prompt halves of the transfer test")
    gold.add_argument("--bootstrap", type=_int_at_least(100), default=1000, help="bootstrap resamples")
    gold.add_argument("--permutations", type=_int_at_least(100), default=1000, help="permutations of the rank tests")
    gold.add_argument("--policy", help="also measure this policy's prompt-specificity (run folder or shipped name)")
    gold.add_argument("--policy-seeds", type=_int_at_least(1), default=8, help="seeds per prompt of the policy test")
    gold.add_argument(
        "--from",
        dest="from_dir",
        metavar="DIR",
        action="append",
        help="re-analyse the renders of a previous --out (repeatable: merge the step counts of several)",
    )
    _add_threads_argument(gold)
    _add_backend_arguments(gold)
    _add_out_argument(gold)

    tr = sub.add_parser(
        "train",
        help="train a noise policy with PPO",
        description="Train a prompt-conditioned initial-noise policy for a frozen model with PPO.",
        epilog=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=1e-4 steps=2")
    tr.add_argument("--preset", help="a shipped preset (noiseppo list presets; default: shapes)")
    tr.add_argument("--config", help="a YAML file of config keys, applied over the preset")
    tr.add_argument("--out", help="run folder to create (must not exist or be empty)")
    tr.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR exactly where it stopped; with iterations=N (more than it has), train "
        "it further to N iterations (no other setting)",
    )
    tr.add_argument("--backend", help="a registered backend (noiseppo list backends)")
    tr.add_argument("--model", help="model folder or hub id of the frozen model")
    tr.add_argument(
        "--reward",
        help="a registered reward (noiseppo list rewards), module:function, http://HOST:PORT/PATH or W*A+W*B",
    )
    tr.add_argument("--prompts", help="training prompts: a prompt set or a .txt/.jsonl file")
    tr.add_argument("--steps", type=_int_at_least(1), help="sampling steps of the frozen model")
    tr.add_argument("--iterations", type=_int_at_least(1), help="PPO iterations")
    tr.add_argument("--device", help="torch device")
    tr.add_argument("--dtype", help="dtype of the frozen model")
    tr.add_argument("--seed", type=_int_at_least(0), help="seed of the run")
    tr.set_defaults(func=cmd_train)

    from noiseppo.rewards import server as reward_server

    serve = sub.add_parser(
        "reward-server",
        help="serve a reward over HTTP (the protocol of noiseppo.rewards.http)",
        description="Serve a reward over HTTP, so that a reward model can live in its own environment. "
        'POST {"prompts": [...], "images": [base64 PNG, ...]} to any path; the answer is {"scores": [...]}.',
    )
    serve.add_argument("--reward", required=True, help="a reward name, as for train (noiseppo list rewards)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=_int_at_least(0), default=8000, help="port (0: any free port)")
    serve.add_argument(
        "--token",
        help="require this bearer token (default: $NOISEPPO_REWARD_TOKEN, which, unlike a flag, other users "
        "cannot read in the process list); without one, a server off loopback warns",
    )
    serve.add_argument(
        "--max-body-mb",
        type=_positive_number,
        default=reward_server.DEFAULT_MAX_BODY_MB,
        help="largest request body in MiB (default %(default)g; 413 beyond)",
    )
    serve.add_argument(
        "--read-timeout",
        type=_positive_number,
        default=reward_server.DEFAULT_READ_TIMEOUT,
        help="seconds a client has to send its whole request (default %(default)g; 408 beyond)",
    )
    serve.add_argument(
        "--queue-timeout",
        type=_positive_number,
        default=reward_server.DEFAULT_QUEUE_TIMEOUT,
        help="seconds a request waits for the reward model while others are scored (default %(default)g; 503 beyond, "
        "which the client retries)",
    )
    serve.set_defaults(func=cmd_reward_server)

    # -- noiseppo search, ddpo and compare --
    from noiseppo.configs.baselines import SearchConfig

    srch = _config_parser(
        sub,
        "search",
        SearchConfig,
        "per-prompt black-box noise search: a free low-resolution mean per prompt, within a render budget",
        "Optimise a free low-resolution noise mean per prompt with any black-box reward (an evolution strategy), "
        "never rendering more than --budget images per prompt.",
    )
    srch.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    srch.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    srch.add_argument(
        "--reward", default="shapes", help="a registered reward, module:function, http://HOST:PORT/PATH or W*A+W*B"
    )
    _add_backend_arguments(srch, takes_policy=False)
    _add_threads_argument(srch)
    _add_out_argument(srch)
    srch.set_defaults(func=cmd_search)

    from noiseppo.configs.baselines import DDPOConfig

    ddpo = _config_parser(
        sub,
        "ddpo",
        DDPOConfig,
        "DDPO: fine-tunes a copy of the Shapes denoiser, or LoRA on an SD pipeline's U-Net (a baseline)",
        "DDPO (Black et al. 2023, importance-sampled PPO over the DDIM eta=1 steps) with a Noise PPO preset's "
        "reward, prompts and render budget: on a copy of the Shapes denoiser (default), or with --backend diffusers "
        "--model FOLDER on LoRA adapters of a StableDiffusionPipeline's U-Net (SD 1.x/2.x, SD-Turbo; SDXL and the "
        "flow backends are refused), written to RUN/lora for pipe.load_lora_weights. docs/baselines.md.",
    )
    ddpo.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="preset overrides, e.g. reward=pickscore prompts=FILE steps=4"
    )
    ddpo.add_argument("--backend", help="shapes (the preset's, default) or diffusers (a StableDiffusionPipeline)")
    ddpo.add_argument("--reward", help="the reward, as for train (default: the preset's); the same as reward=NAME")
    ddpo.add_argument("--prompts", help="training prompts, as for train (default: the preset's); as prompts=FILE")
    ddpo.add_argument(
        "--model",
        help="Shapes model folder (default: the shipped one) or, with --backend diffusers, a pipeline "
        "folder or hub id; never modified",
    )
    ddpo.add_argument("--device", help="torch device of --backend diffusers, e.g. cuda (default: cpu)")
    ddpo.add_argument(
        "--dtype", help="float32, float16 or bfloat16, --backend diffusers (the adapters train in float32)"
    )
    ddpo.add_argument("--out", help="run folder (must not exist or be empty)")
    ddpo.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run (Shapes or --backend diffusers) from its last checkpoint, exactly; "
        "with --iterations N (at least what it has done), train it further to N",
    )
    ddpo.set_defaults(func=cmd_ddpo)

    cmp = sub.add_parser(
        "compare",
        help="best-of-N, noise search, DDPO and Noise PPO on the same held-out prompts and seeds: compare.json",
    )
    cmp.add_argument(
        "--methods",
        required=True,
        help="comma-separated: standard, best-of-N, search@B, noise-ppo, noise-ppo+best-of-N, noise-ppo-blind "
        "(the prompt hidden from the policy), golden-top-K (K noises chosen on the training prompts), policy:NAME, "
        "ddpo, ddpo@ITERATIONS",
    )
    cmp.add_argument("--prompts", help="held-out prompts: a prompt set or a file")
    cmp.add_argument("--seeds", type=_int_at_least(1), help="images per prompt (paired across methods)")
    cmp.add_argument("--seed", type=_int_at_least(0), help="base seed (pairs with noiseppo sample)")
    cmp.add_argument("--steps", type=_int_at_least(1), help="sampling steps of the frozen model")
    cmp.add_argument("--reward", help="the reward every method optimises and picks with")
    cmp.add_argument("--preset", help="the Noise PPO preset (and DDPO's budget)")
    cmp.add_argument(
        "--backend",
        help="shapes (default), diffusers, sd3 or flux: the frozen model every method runs on; another backend than "
        "shapes takes --model, --reward and --prompts of its own (DDPO: shapes and diffusers only)",
    )
    cmp.add_argument("--model", help="the backend's model folder or hub id (shapes: the shipped model)")
    cmp.add_argument("--device", help="torch device of the model, e.g. cuda (default: cpu)")
    cmp.add_argument("--dtype", help="float32 (default), float16 or bfloat16")
    _add_threads_argument(cmp)
    cmp.add_argument(
        "--iterations",
        type=_int_at_least(0),
        help="Noise PPO's iterations, and plain ddpo's (0: the preset's; a smaller budget for a short run)",
    )
    cmp.add_argument("--search-curve", help="renders per prompt at which search is also evaluated")
    cmp.add_argument("--bootstrap", type=_int_at_least(100), help="bootstrap resamples")
    cmp.add_argument("--golden-noises", type=_int_at_least(1), help="shared noises golden-top-K chooses its K from")
    cmp.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="preset overrides of the methods trained here, e.g. prompts=FILE (their training prompts); "
        "eval_prompts=, eval_seeds=, reward=, steps=, model= set --prompts, --seeds, --reward, --steps, --model",
    )
    _add_out_argument(cmp)
    cmp.set_defaults(func=cmd_compare)
    # -- end of noiseppo search, ddpo and compare --

    # -- noiseppo report --
    rep = sub.add_parser("report", help="one self-contained HTML page of runs, evaluations and comparisons")
    rep.description = cmd_report.__doc__
    rep.add_argument("folders", nargs="+", metavar="DIR", help="run, eval and compare folders, shown in this order")
    rep.add_argument("--out", help="the HTML file to write (default: FIRST_DIR/report.html)")
    rep.set_defaults(func=cmd_report)
    # -- end of noiseppo report --

    listing = sub.add_parser("list", help="what a registry holds, one per line")
    listing.add_argument("what", choices=["presets", "rewards", "backends", "prompts", "policies"])
    listing.set_defaults(func=cmd_list)
    return parser


def _subcommand(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser | None, int]:
    """The (sub)command parser ``argv`` names (``shapes render``: render's), and the index after its name."""
    found, start = None, 0
    while True:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = next((i for i in range(start, len(argv)) if not argv[i].startswith("-")), None)
        if choices is None or name is None or argv[name] not in choices:
            return found, start
        parser = found = choices[argv[name]]
        start = name + 1


def _values_taken(parser: argparse.ArgumentParser, token: str) -> int:
    """How many of the following tokens the option ``token`` reads (argparse's abbreviations too)."""
    if token.startswith("--") and "=" in token:
        return 0
    actions = {a for o, a in parser._option_string_actions.items() if o == token or o.startswith(token)}
    action = parser._option_string_actions.get(token) or (actions.pop() if len(actions) == 1 else None)
    if action is None or action.nargs == 0 or action.nargs == argparse.OPTIONAL:
        return 0
    return action.nargs if isinstance(action.nargs, int) else 1


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, with ``KEY=VALUE`` settings taken wherever they stand on the line.

    A command with an ``overrides`` positional (train, ddpo) collects them all, in order (argparse
    alone takes only the first unbroken group); any other command without positionals reads
    ``reward=X`` as ``--reward X`` where it stands, and a key it has no flag for is one line with
    the nearest one. Option values are never settings (``--prompt 'a=b'``), nor is anything after ``--``."""
    import re

    sub, start = _subcommand(parser, argv)
    takes = sub is not None and any(a.dest == "overrides" for a in sub._actions)
    if sub is None or (not takes and any(not a.option_strings for a in sub._actions)):
        return parser.parse_args(argv)  # score, report, list: their positionals are files and names
    kept, settings, i = argv[:start], [], start
    while i < len(argv) and argv[i] != "--":
        token = argv[i]
        taken = _values_taken(sub, token) if token.startswith("-") else 0
        if not token.startswith("-") and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", token):
            if takes:
                settings.append(token)
            else:
                kept.append(_as_flag(sub, token))
        else:
            kept += argv[i : i + 1 + taken]
        i += 1 + taken
    args = parser.parse_args(kept + argv[i:])
    if takes:
        args.overrides = [*args.overrides, *settings]
    return args


def _as_flag(parser: argparse.ArgumentParser, setting: str) -> str:
    """``KEY=VALUE`` as the flag ``--KEY=VALUE`` of ``parser``, or one line naming the nearest key."""
    from noiseppo.names import closest

    key, value = setting.split("=", 1)
    action = parser._option_string_actions.get("--" + key.replace("_", "-"))
    if action is None or action.nargs == 0:  # a switch is given as --switch, not switch=true
        options = parser._option_string_actions.items()
        keys = [o[2:].replace("-", "_") for o, a in options if o.startswith("--") and a.nargs != 0]
        near = closest(key, keys)
        hint = f"did you mean '{near}'?" if near else f"see '{parser.prog} --help'"
        raise UserError(f"'{setting}': {parser.prog} has no setting '{key}' ({hint})")
    return f"{action.option_strings[-1]}={value}"


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" in argv[:end]:  # anywhere before --, for every command; the env reaches the processes it starts
        argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]
        os.environ[DEBUG_ENV] = "1"
    try:
        args = _parse(build_parser(), argv)
        return args.func(args)
    except UserError as e:
        if debugging():
            _print_traceback(e)
        print(f"noiseppo: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # it says what was kept
        print(f"noiseppo: {e}", file=sys.stderr)
        return EXIT_STATUS
    except KeyboardInterrupt:
        print(f"noiseppo: {_interrupted(args)}", file=sys.stderr)
        return EXIT_STATUS


def _print_traceback(error: BaseException) -> None:
    """The whole chain behind a one-line error, also the parts a ``raise ... from None`` hid."""
    import traceback

    seen, link = set(), error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    traceback.print_exception(error, file=sys.stderr)


def _interrupted(args: argparse.Namespace | None) -> str:
    """The line for a Ctrl-C that came outside a training loop (which says more itself)."""
    out = getattr(args, "out", None)
    if getattr(args, "command", None) in ("train", "ddpo"):  # the trainers with a run folder
        from noiseppo.storage.steps import has_state  # not .checkpoint: the interrupt may have cut torch's import short

        run = args.resume or out
        if run and has_state(Path(run) / "checkpoint"):
            return f"interrupted; the run's checkpoint is kept: `noiseppo {args.command} --resume {run}` continues"
        return "interrupted before the run began; nothing to resume"
    if out and getattr(args, "shapes_command", None) != "train-base":  # written to a temporary folder
        return f"interrupted; nothing written to {out}"
    return "interrupted"


def entry_point() -> NoReturn:
    """The console script. Ctrl-C at any moment (imports, model loading, a held-out pass) is one line
    and exit status 130, never a traceback: ``main`` turns the first into its line, and a second one
    (while the first is handled, or while Python shuts down: threads joined, files flushed) ends the
    process at once, with a line of its own."""
    # Where SIGINT is ignored (a shell's background job, nohup), it stays ignored.
    handled = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if handled:
        signal.signal(signal.SIGINT, _first_sigint)
    try:
        code = main()
    except KeyboardInterrupt:  # one that came while main was already leaving
        print("noiseppo: interrupted", file=sys.stderr)
        code = EXIT_STATUS
    if handled:
        signal.signal(signal.SIGINT, _again_sigint)
    sys.exit(code)


def _first_sigint(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, _again_sigint)
    raise KeyboardInterrupt


def _again_sigint(signum: int, frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to save
            pass
    os.write(2, b"\nnoiseppo: interrupted\n")
    os._exit(EXIT_STATUS)
