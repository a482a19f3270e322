"""Train the embedded Shapes text-to-image model (``noiseppo shapes train-base``). It lives in
``training/``, above ``shapes/`` and ``backends/``: it builds the world's model and evaluates it
through the backend.

v-prediction on a cosine noise schedule, the text encoder and the denoiser trained
jointly from scratch on freshly rendered scenes of all 696 prompts (templates drawn
uniformly), 10% of prompts dropped to the empty prompt for classifier-free guidance,
AdamW with warm-up and cosine decay, and an exponential moving average (EMA) of the
weights, which is what gets exported. The run folder holds ``checkpoint/`` (resumable,
written atomically), ``metrics.jsonl`` and, at the end, ``model/`` in the layout that
``ShapesBackend.from_pretrained`` reads.

The run folder (``noiseppo.storage.run_folder``)::

    config.json    the ShapesModelTrainConfig (what --resume reads)
    metrics.jsonl  one row per optimizer step ("step", loss, grad_norm, lr, elapsed_s: the run's
                   wall seconds, over its sessions; eval_correct and eval_partial when evaluated)
    checkpoint/    text encoder, denoiser, EMA, optimizer, data generator and step, every checkpoint_every
    snapshots/     step-N/: the EMA model at each evaluation
    model/         the final EMA model
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel

from noiseppo.backends import checked_device
from noiseppo.backends.shapes import ShapesBackend
from noiseppo.configs.train import ShapesModelTrainConfig
from noiseppo.errors import UserError, error_line
from noiseppo.shapes.grammar import COLOURS, SHAPES, all_prompts
from noiseppo.shapes.model import BOS, GROUPS, HEADS, PAD, ShapesDenoiser, ShapesTextEncoder
from noiseppo.shapes.render import ShapesDataset
from noiseppo.shapes.splits import test_prompts
from noiseppo.shapes.verifier import verify
from noiseppo.storage.checkpoint import has_state, load_state, optimizer_from_tensors, optimizer_to_tensors, save_state
from noiseppo.storage.interrupt import deferred_sigint
from noiseppo.storage.run_folder import RunFolder, checkpoint_due
from noiseppo.storage.safe_load import load_pretrained

VOCAB = [PAD, BOS, "a", "two", "three", *COLOURS, *SHAPES, *(s + "s" for s in SHAPES)]
VOCAB += ["and", "left", "right", "of", "above", "below"]


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def build(config: ShapesModelTrainConfig) -> tuple[ShapesTextEncoder, ShapesDenoiser, DDPMScheduler]:
    torch.manual_seed(config.seed)
    text_encoder = ShapesTextEncoder(vocab=VOCAB, dim=config.text_dim)
    denoiser = ShapesDenoiser(dim=config.dim, depth=config.depth, text_dim=config.text_dim)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    return text_encoder, denoiser, scheduler


def quick_eval(backend: ShapesBackend, config: ShapesModelTrainConfig, steps: int = 50) -> dict[str, float]:
    """Correct and partial rate on the first ``eval_prompt_count`` prompts of shapes-test."""
    prompts = test_prompts()[: config.eval_prompt_count]
    g = torch.Generator().manual_seed(12345)  # on the CPU: the same latents on every device
    latents = torch.randn(len(prompts), *backend.latent_shape, generator=g)
    images = backend.generate(latents, backend.encode(prompts), steps, config.eval_guidance)
    verdicts = verify(images, prompts)
    return {
        "eval_correct": float(np.mean([v.correct for v in verdicts])),
        "eval_partial": float(np.mean([v.partial for v in verdicts])),
    }


def validate(config: ShapesModelTrainConfig) -> None:
    """Refuse settings that cannot run, before anything is loaded or written (named by their flags)."""

    def refuse(key: str, must: str) -> UserError:
        return UserError(f"--{key.replace('_', '-')} must be {must}, got {getattr(config, key)}")

    for key in ("optimizer_steps", "batch", "checkpoint_every", "eval_every", "eval_prompt_count"):
        if getattr(config, key) < 1:
            raise refuse(key, ">= 1")
    for key in ("warmup", "depth", "seed", "threads"):
        if getattr(config, key) < 0:
            raise refuse(key, ">= 0")
    # The denoiser's 32x32 stage has dim/4 channels, normalised in GROUPS groups.
    if config.dim < 4 * GROUPS or config.dim % (4 * GROUPS):
        raise refuse("dim", f"a multiple of {4 * GROUPS} (dim/4 channels in {GROUPS} groups)")
    if config.text_dim < HEADS or config.text_dim % HEADS:
        raise refuse("text_dim", f"a multiple of {HEADS} (the text encoder's attention heads)")
    if not 0 < config.lr < math.inf:
        raise refuse("lr", "a finite number > 0")
    for key in ("weight_decay", "eval_guidance"):
        if not 0 <= getattr(config, key) < math.inf:
            raise refuse(key, "a finite number >= 0")
    for key in ("ema_decay", "uncond_prob"):
        if not 0 <= getattr(config, key) < 1:
            raise refuse(key, "in [0, 1)")


def train_shapes_model(config: ShapesModelTrainConfig, out: Path, resume: bool = False, device: str = "cpu") -> Path:
    """Train (or resume) into ``out``; returns the exported model folder.

    ``device`` is not part of the saved config: a run may resume on another device. All
    random draws stay on a CPU generator, so the data, timesteps and noise are the same
    on every device (the weights still differ by the devices' float rounding).
    """
    device = checked_device(device)
    validate(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.init and not (Path(config.init) / "denoiser" / "config.json").is_file():
        raise UserError(f"--init {config.init}: not a model folder (no denoiser/config.json)")
    run = RunFolder(out, "config.json", f"noiseppo shapes train-base --out {out} --resume", clock_key="elapsed_s")
    if resume:
        run.refuse_unresumable("nothing to resume (no config.json)", checkpoint=False)  # none yet: from step 0
        saved = run.read_json_config()
        try:
            config = ShapesModelTrainConfig(**saved)
        except TypeError:  # not a mapping, or keys of another version
            raise UserError(f"{run.config}: not a train-base config") from None
        validate(config)
    elif run.config.exists():
        raise UserError(f"{out}: already holds a run; use --resume or a new folder")
    else:
        run.refuse_taken("exists and is not a train-base run; choose a new folder")

    text_encoder, denoiser, scheduler = build(config)
    if config.init:  # before the run folder is written: a bad --init leaves nothing behind
        _load_init(text_encoder, denoiser, Path(config.init))
    text_encoder.to(device)
    denoiser.to(device)
    if not resume:
        run.write_config(json.dumps(dataclasses.asdict(config), indent=1))
    params = list(text_encoder.parameters()) + list(denoiser.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMAModel(params, decay=config.ema_decay)
    generator = torch.Generator().manual_seed(config.seed)
    start = 0
    if resume and has_state(run.checkpoints):
        tensors, meta = load_state(run.checkpoints)
        text_encoder.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("te.")})
        denoiser.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("den.")})
        optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
        ema.shadow_params = [tensors[f"ema.{i}"].to(device) for i in range(len(params))]
        ema.optimization_step = meta["ema_step"]
        generator.set_state(tensors["rng"])
        start = meta["step"]
        print(f"resumed at step {start}")
    run.resumed_at("step", start)  # a killed run's rows after its checkpoint go; elapsed_s goes on

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.optimizer_steps - config.warmup)
        return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def checkpoint(done: int) -> None:
        tensors = {f"te.{k}": v for k, v in text_encoder.state_dict().items()}
        tensors.update({f"den.{k}": v for k, v in denoiser.state_dict().items()})
        tensors.update({f"ema.{i}": p for i, p in enumerate(ema.shadow_params)})
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        tensors.update(opt_tensors)
        tensors["rng"] = generator.get_state()
        meta = {"step": done, "ema_step": ema.optimization_step, "optimizer": opt_meta}
        save_state(run.checkpoints, tensors, meta, done)

    dataset = ShapesDataset([p.text for p in all_prompts()], seed=config.seed)
    # Ctrl-C: the step it came in finishes (a fraction of a second), is checkpointed, then the run stops.
    with deferred_sigint() as interrupted:
        for step in range(start, config.optimizer_steps):
            items = [dataset[step * config.batch + i] for i in range(config.batch)]
            drop = torch.rand(config.batch, generator=generator) < config.uncond_prob
            prompts = ["" if d else p for d, (p, _) in zip(drop.tolist(), items, strict=True)]
            x0 = _to_tensor([im for _, im in items])
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (config.batch,), generator=generator)
            x0, noise, t = x0.to(device), noise.to(device), t.to(device)
            noisy = scheduler.add_noise(x0, noise, t)
            target = scheduler.get_velocity(x0, noise, t)

            states, pooled, mask = text_encoder.encode(prompts)
            loss = torch.nn.functional.mse_loss(denoiser(noisy, t, states, pooled, mask), target)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            ema.step(params)

            row: dict[str, float] = {"step": step + 1, "loss": loss.item(), "grad_norm": grad_norm.item()}
            row["lr"] = lr_at(step)
            row["elapsed_s"] = run.clock()
            done = step + 1
            if done % config.eval_every == 0 or done == config.optimizer_steps:
                row.update(_eval_ema(text_encoder, denoiser, scheduler, ema, params, config, device))
                # Keep every evaluated model, for the quality-over-training record and as `--init`
                # starting points. The shipped model is the run's final model/, not a snapshot
                # picked by its score (docs/shapes.md, "Retraining").
                export(text_encoder, denoiser, scheduler, ema, params, out / "snapshots" / f"step-{done}")
            if done % 50 == 0 or "eval_correct" in row:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("step", "elapsed_s"))
                print(f"step {done} of {config.optimizer_steps} ({row['elapsed_s']:.0f} s): {shown}", flush=True)
            run.append(row)
            stop = interrupted()  # read once: a Ctrl-C between two reads would skip the checkpoint
            if checkpoint_due(done, config.checkpoint_every, config.optimizer_steps) or stop:
                checkpoint(done)
            if stop and done < config.optimizer_steps:
                raise run.interrupted("step", done, config.optimizer_steps)
    return export(text_encoder, denoiser, scheduler, ema, params, out / "model")


def _load_init(text_encoder: ShapesTextEncoder, denoiser: ShapesDenoiser, folder: Path) -> None:
    """Copy the weights of an exported model into freshly built modules of the same shape."""
    for name, module in (("text_encoder", text_encoder), ("denoiser", denoiser)):
        try:
            loaded = load_pretrained(type(module), folder / name)
        except (UserError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"--init {folder}: cannot load {name}: {error_line(exc)}") from None
        try:
            module.load_state_dict(loaded.state_dict())
        except RuntimeError:
            raise UserError(f"--init {folder}: {name} does not match --dim/--depth/--text-dim") from None


def _with_ema(ema: EMAModel, params: list[torch.nn.Parameter], fn):
    ema.store(params)
    ema.copy_to(params)
    try:
        return fn()
    finally:
        ema.restore(params)


def _eval_ema(text_encoder, denoiser, scheduler, ema, params, config, device) -> dict[str, float]:
    def run() -> dict[str, float]:
        backend = ShapesBackend(text_encoder, denoiser, scheduler.config, device=device)
        result = quick_eval(backend, config)
        text_encoder.train().requires_grad_(True)
        denoiser.train().requires_grad_(True)
        return result

    return _with_ema(ema, params, run)


def export(text_encoder, denoiser, scheduler, ema, params, folder: Path) -> Path:
    """Save the EMA weights in the layout ``ShapesBackend.from_pretrained`` reads."""

    def run() -> Path:
        text_encoder.save_pretrained(folder / "text_encoder")
        denoiser.save_pretrained(folder / "denoiser")
        scheduler.save_pretrained(folder / "scheduler")
        return folder

    return _with_ema(ema, params, run)
