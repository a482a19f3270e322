"""``noiseppo ddpo --resume RUN``: either DDPO run (on Shapes, ``noiseppo.baselines.ddpo``, or with LoRA
on a diffusers pipeline, ``noiseppo.baselines.ddpo_diffusers``) continued from its checkpoint, with the
settings its ``config.json`` holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from noiseppo.baselines.ddpo import train_shapes_ddpo
from noiseppo.configs.baselines import DDPOConfig
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.storage.checkpoint import load_state
from noiseppo.storage.run_folder import RunFolder


def resume_ddpo(out: str | Path, iterations: int = 0, threads: int = 0, quiet: bool = False) -> dict:
    """Continue the DDPO run in ``out`` (Shapes or diffusers) where its checkpoint stopped;
    ``iterations`` > 0 extends it to that many (never fewer than it has done)."""
    out = Path(out)
    run = RunFolder(out, "config.json", f"noiseppo ddpo --resume {out}")
    run.refuse_unresumable("not a DDPO run folder to resume (needs config.json and checkpoint/)")
    saved = run.read_json_config()
    try:
        config, cfg = DDPOConfig(**saved["ddpo"]), TrainConfig(**saved["preset"])
        model = str(saved["model"])
    except (KeyError, TypeError) as e:
        raise UserError(f"{run.config}: not a DDPO run's settings ({e.__class__.__name__})") from None
    if iterations < 0:
        raise UserError(f"--iterations must be >= 0 (0: the run's own), got {iterations}")
    if iterations:
        done = int(load_state(run.checkpoints)[1]["iteration"])
        if iterations < done:
            raise UserError(f"--iterations {iterations}: the run in {out} has already done {done}")
        config.iterations, cfg = iterations, dataclasses.replace(cfg, iterations=iterations)
    if threads:
        config.threads = threads
    if cfg.backend == "diffusers":
        from noiseppo.baselines.ddpo_diffusers import train_ddpo_diffusers  # diffusers' modules only for its runs

        return train_ddpo_diffusers(config, cfg, out, model, quiet, resume=True)
    return train_shapes_ddpo(config, cfg, out, model, quiet, resume=True)
