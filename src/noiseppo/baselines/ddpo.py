"""DDPO on the embedded Shapes model (``noiseppo ddpo``): the baseline that changes the weights.

Black et al. 2023, the importance-sampled PPO variant (DDPO_IS), on a *copy* of the frozen
denoiser (the shipped files are only read). Each iteration:

1. draws prompts and initial noise as Noise PPO does, and samples with DDIM at η = 1, so every
   step x_t → x_{t-1} is a Gaussian N(mean_θ(x_t, t), σ_t²) with a log-probability;
2. stores the whole trajectory (every x_t and each step's log-probability): what Noise PPO
   never stores, and what ``trajectory_bytes_per_sample`` reports;
3. scores the final images with the reward and turns them into the preset's per-prompt advantages;
4. runs PPO over the timesteps: for each minibatch, every stochastic step is recomputed with
   gradients through the denoiser, ratio = exp(log p_θ − log p_old), Noise PPO's clipped
   surrogate (``noiseppo.training.ppo.ppo_loss``) is accumulated over the steps and one AdamW step is taken.

That iteration (``ddpo_iteration``) knows the model only through ``DDPOModel``: the Shapes copy
here (``ShapesDDPOModel``, trained by ``ShapesDDPO``), or LoRA adapters on a diffusers Stable Diffusion
pipeline's U-Net (``noiseppo.baselines.ddpo_diffusers``, ``--backend diffusers``). Both keep their run
folder through ``noiseppo.storage.run_folder``, and ``noiseppo ddpo --resume RUN`` continues either
(``noiseppo.baselines.ddpo_resume``).

The log-probability is the mean over latent dimensions (ddpo-pytorch's convention, with its
clip range 1e-4). The mean of each step is what diffusers' ``DDIMScheduler.step`` returns with
zero variance noise; its σ_t is η·sqrt(``_get_variance``), diffusers' own. A step whose σ_t is
0 is deterministic and carries no log-probability: with ``timestep_spacing="trailing"`` and
``set_alpha_to_one``, the last step (to ᾱ = 1) is one, so at 4 steps three steps are trained.
Held-out evaluation renders with the project's sampler (DDIM, η = 0) and the tuned weights,
from the same initial noise as the standard side, so its pairs match ``noiseppo eval``'s.

The run folder::

    config.json    the DDPOConfig, the preset's settings it used and the model (what --resume reads)
    metrics.jsonl  one row per iteration (reward, approx_kl, clipfrac, first_ratio, time) and eval rows
    checkpoint/    noiseppo.storage.checkpoint steps: the tuned denoiser, optimizer, advantage
                   statistics, iteration (every ``checkpoint_every`` iterations, the newest ``keep_checkpoints``)
    model/         at the end, a Shapes model folder (text_encoder/, scheduler/ copied; denoiser/ tuned),
                   which ``noiseppo sample --model RUN/model`` renders with
    ddpo.json      at the end, the summary: wall time, peak RSS, trajectory bytes, the last held-out row

Resume is exact, as Noise PPO's: every random draw of an iteration comes from a generator seeded by
(seed, iteration). Ctrl-C, or a failure inside an iteration, checkpoints the last finished one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import DDIMScheduler

from noiseppo.backends.base import Conditioning
from noiseppo.backends.shapes import DEFAULT_MODEL, ShapesBackend, make_scheduler
from noiseppo.configs.baselines import DDPOConfig
from noiseppo.configs.presets import resolve
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.evaluation.sides import PairedSides
from noiseppo.memory import PeakRSS
from noiseppo.policy import gaussian_log_prob
from noiseppo.prompts import load_prompts
from noiseppo.rewards import get_reward
from noiseppo.rewards.scoring import score_with_details
from noiseppo.sampling.render import RenderSpec, draw_batch, encode_distinct
from noiseppo.sampling.seeds import DDPO_STREAM, sample_seed
from noiseppo.storage.checkpoint import load_training, save_training
from noiseppo.storage.files import replaced_folder, write_atomically
from noiseppo.storage.run_folder import RunFolder, checkpoint_due
from noiseppo.training.advantages import PerPromptStats
from noiseppo.training.ppo import ppo_loss

FULL_LR = 1e-5
"""``--lr 0``'s value for a full fine-tune (the Shapes copy): a tenth of ddpo-pytorch's LoRA rate."""
LORA_LR = 1e-4
"""``--lr 0``'s value for LoRA adapters: ddpo-pytorch's ``config/base.py``."""


def step_std(scheduler: DDIMScheduler, t: int, eta: float) -> float:
    """σ_t of the DDIM step from ``t`` at ``eta``: η·sqrt of diffusers' DDIM variance."""
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    return float(eta * scheduler._get_variance(int(t), int(prev_t)) ** 0.5)


def ddim_step_with_logprob(
    scheduler: DDIMScheduler,
    model_output: torch.Tensor,
    t: torch.Tensor,
    x: torch.Tensor,
    eta: float,
    prev_x: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """One DDIM step at ``eta``: (x_prev, log p(x_prev | x), mean, σ). ``prev_x`` given: its
    log-probability (the PPO pass); else x_prev = mean + σ·``noise`` (sampling). The
    log-probability is the mean over latent dimensions; NaN-free 0 for a deterministic step."""
    zeros = torch.zeros_like(x)
    mean = scheduler.step(model_output, t, x, eta=eta, variance_noise=zeros).prev_sample
    std = step_std(scheduler, int(t), eta)
    if prev_x is None:
        prev_x = mean + std * noise if std > 0 else mean
    if std == 0:
        return prev_x, torch.zeros(len(x), device=x.device), mean, std
    log_sigma = torch.full_like(mean, float(np.log(std)))
    return prev_x, gaussian_log_prob(prev_x.detach(), mean, log_sigma, "mean"), mean, std


def check_stochastic(scheduler: DDIMScheduler, eta: float) -> None:
    """Refuse a schedule (set to the run's steps) none of whose steps has a log-probability: nothing to train."""
    if not any(step_std(scheduler, int(t), eta) > 0 for t in scheduler.timesteps):
        steps = len(scheduler.timesteps)
        raise UserError(
            f"DDPO at {steps} step(s) has no stochastic step to train (a step to alpha-bar 1 is deterministic): "
            "use steps >= 2"
        )


@dataclass
class Trajectories:
    xs: torch.Tensor  # (N, S + 1, *latent): x_T (the initial noise) ... x_0
    log_probs: torch.Tensor  # (N, S): log p_old of each step (0 where deterministic)
    timesteps: torch.Tensor  # (S,)
    stochastic: list[bool]  # (S,): σ_t > 0

    def nbytes_per_sample(self) -> int:
        return (self.xs.nbytes + self.log_probs.nbytes) // len(self.xs)


Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x_t, t) -> the model output DDIM steps with (float32), for a fixed batch of prompts."""


class DDPOModel(Protocol):
    """What a DDPO iteration needs of the model it tunes (the Shapes copy, or a pipeline's LoRA)."""

    latent_shape: tuple[int, ...]
    device: torch.device
    scheduler: DDIMScheduler  # set to the run's step count

    def encode(self, prompts: list[str]) -> Conditioning: ...

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor: ...

    def images(self, x0: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


@torch.no_grad()
def sample_trajectories(
    predict: Predict, scheduler: DDIMScheduler, latents: torch.Tensor, eta: float, generator: torch.Generator
) -> Trajectories:
    """Sample x_T = ``latents`` → x_0 at ``eta``, keeping every x_t and every step's log-probability."""
    xs, lps, stochastic = [latents * scheduler.init_noise_sigma], [], []
    for t in scheduler.timesteps:
        x = xs[-1]
        noise = torch.randn(x.shape, generator=generator).to(x.device)  # drawn on the CPU: any device repeats it
        prev_x, lp, _, std = ddim_step_with_logprob(scheduler, predict(x, t), t, x, eta, noise=noise)
        xs.append(prev_x)
        lps.append(lp)
        stochastic.append(std > 0)
    return Trajectories(torch.stack(xs, 1), torch.stack(lps, 1), scheduler.timesteps.clone(), stochastic)


def ppo_minibatch(
    predict: Predict,
    scheduler: DDIMScheduler,
    traj: Trajectories,
    advantages: torch.Tensor,
    config: DDPOConfig,
    order: list[int],
) -> dict[str, float]:
    """Accumulate the clipped surrogate's gradient over the stochastic steps (in ``order``)."""
    stats = {"approx_kl": 0.0, "clipfrac": 0.0, "first_ratio_dev": 0.0, "loss": 0.0}
    steps = [k for k in order if traj.stochastic[k]]
    for n, k in enumerate(steps):
        t = traj.timesteps[k]
        out = predict(traj.xs[:, k], t)
        _, lp, _, _ = ddim_step_with_logprob(scheduler, out, t, traj.xs[:, k], config.eta, prev_x=traj.xs[:, k + 1])
        loss, got = ppo_loss(lp, traj.log_probs[:, k], advantages, config.clip_range)  # Noise PPO's, per step
        (loss / len(steps)).backward()
        stats["approx_kl"] += float(got["approx_kl"]) / len(steps)
        stats["clipfrac"] += float(got["clipfrac"]) / len(steps)
        stats["loss"] += float(loss.detach()) / len(steps)
        if n == 0:
            stats["first_ratio_dev"] = float((torch.exp(lp.detach() - traj.log_probs[:, k]) - 1).abs().max())
    return stats


def ddpo_iteration(
    model: DDPOModel,
    optimizer: torch.optim.Optimizer,
    stats: PerPromptStats,
    reward,
    prompts: list[str],
    cfg: TrainConfig,
    config: DDPOConfig,
    iteration: int,
) -> tuple[dict[str, float], Trajectories]:
    """Iteration ``iteration`` (from 0): sample trajectories, score them, take the PPO steps.

    Every random draw comes from one generator seeded by (seed, iteration), so the iteration is
    a function of the model's and optimizer's state, the advantage statistics and its number:
    what makes a resumed run repeat the uninterrupted one."""
    start = time.perf_counter()
    batch = cfg.prompts_per_iteration * cfg.samples_per_prompt
    generator = torch.Generator().manual_seed(sample_seed(config.seed, iteration, DDPO_STREAM))
    texts, eps = draw_batch(cfg, prompts, model.latent_shape, generator)  # as Noise PPO draws its batch
    cond = model.encode(texts)

    def predict_for(rows: list[int]) -> Predict:
        part = cond.select(rows)
        return lambda x, t: model.predict(x, t, part)

    parts = [
        sample_trajectories(
            predict_for(list(range(s, min(s + config.render_batch, batch)))),
            model.scheduler,
            eps[s : s + config.render_batch].to(model.device),
            config.eta,
            generator,
        )
        for s in range(0, batch, config.render_batch)
    ]
    traj = Trajectories(
        torch.cat([p.xs for p in parts]),
        torch.cat([p.log_probs for p in parts]),
        parts[0].timesteps,
        parts[0].stochastic,
    )
    chunks = range(0, batch, config.render_batch)
    with torch.no_grad():
        images = torch.cat([model.images(traj.xs[s : s + config.render_batch, -1]) for s in chunks])
    scores, _ = score_with_details(reward, images, texts)  # the reward reads the prompts as given
    adv, _ = stats.advantages(cond.prompts, scores.numpy())
    adv_t = torch.from_numpy(np.clip(adv, -config.adv_clip, config.adv_clip)).float().to(model.device)
    logged: dict[str, float] = {}
    first_ratio = 0.0
    for epoch in range(config.epochs):
        perm = torch.randperm(batch, generator=generator).tolist()
        for m in range(0, batch, config.minibatch):
            rows_m = perm[m : m + config.minibatch]
            sub = Trajectories(traj.xs[rows_m], traj.log_probs[rows_m], traj.timesteps, traj.stochastic)
            order = torch.randperm(len(traj.timesteps), generator=generator).tolist()
            optimizer.zero_grad()
            got = ppo_minibatch(predict_for(rows_m), model.scheduler, sub, adv_t[rows_m], config, order)
            if epoch == 0 and m == 0:
                first_ratio = got["first_ratio_dev"]
            grad_norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), config.max_grad_norm)
            optimizer.step()
            for key in ("approx_kl", "clipfrac", "loss"):
                logged[key] = logged.get(key, 0.0) + got[key] / (config.epochs * batch // config.minibatch)
            logged["grad_norm"] = float(grad_norm)
    row = {
        "iteration": iteration + 1,
        "reward_mean": float(np.nanmean(scores.numpy())),
        **logged,
        "first_ratio_dev": first_ratio,
        "time_s": time.perf_counter() - start,
    }
    return row, traj


class ShapesDDPOModel:
    """The Shapes backend's encoder and schedule around a trainable copy of its denoiser."""

    def __init__(self, backend: ShapesBackend, tuned, steps: int, eta: float):
        self.backend, self.tuned = backend, tuned
        self.latent_shape, self.device = backend.latent_shape, backend.device
        self.scheduler = DDIMScheduler.from_config(backend.train_scheduler_config, timestep_spacing="trailing")
        self.scheduler.set_timesteps(steps)
        check_stochastic(self.scheduler, eta)

    def encode(self, prompts: list[str]) -> Conditioning:
        return encode_distinct(self.backend, prompts)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.tuned(x, t, cond.token_states, cond.pooled, cond.mask).float()

    def images(self, x0: torch.Tensor) -> torch.Tensor:
        return ((x0 + 1) / 2).clamp(0, 1)  # pixel space in [-1, 1]

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.tuned.parameters()


DDPO_BACKENDS = ("shapes", "diffusers")
"""The backends DDPO tunes: the Shapes denoiser (a full copy) and SD pipelines' U-Nets (LoRA)."""


def ddpo_settings(config: DDPOConfig, overrides: tuple[str, ...] = ()) -> TrainConfig:
    """The Noise PPO preset (with ``key=value`` overrides) whose budget and task DDPO shares."""
    preset = resolve(config.preset, overrides=list(overrides))
    if config.iterations < 0:
        raise UserError(f"--iterations must be >= 0 (0: the preset's), got {config.iterations}")
    if config.iterations:
        preset = dataclasses.replace(preset, iterations=config.iterations)
    batch = preset.prompts_per_iteration * preset.samples_per_prompt
    if config.minibatch == 0:
        config.minibatch = batch // 4 if batch % 4 == 0 else batch
    if config.minibatch < 1 or batch % config.minibatch:
        raise UserError(f"--minibatch {config.minibatch} does not divide the iteration's batch of {batch} trajectories")
    if config.lr == 0:
        config.lr = FULL_LR if preset.backend == "shapes" else LORA_LR
    for key in ("clip_range", "lr"):
        if not 0 < getattr(config, key) < float("inf"):
            raise UserError(f"--{key.replace('_', '-')} must be a finite number > 0, got {getattr(config, key)}")
    if not 0 < config.eta <= 1:
        raise UserError(f"--eta must be in (0, 1], got {config.eta} (DDPO needs stochastic steps)")
    if preset.backend not in DDPO_BACKENDS:
        raise UserError(
            f"DDPO runs on the shapes and diffusers (Stable Diffusion) backends, not '{preset.backend}': "
            "flow-matching models (sd3, flux) sample without DDIM's Gaussian steps"
        )
    if preset.backend == "shapes":
        lora = {f.name: f.default for f in dataclasses.fields(DDPOConfig) if f.name.startswith("lora_")}
        changed = [k for k, v in lora.items() if getattr(config, k) != v]
        if changed:
            flag = "--" + changed[0].replace("_", "-")
            raise UserError(f"{flag} applies to --backend diffusers (LoRA); the Shapes DDPO tunes a full copy")
        if (preset.device, preset.dtype) != ("cpu", "float32"):
            raise UserError(f"the Shapes DDPO runs on cpu in float32, got {preset.device} and {preset.dtype}")
    return preset


class ShapesDDPO:
    """DDPO on a trainable copy of the Shapes denoiser; ``step()`` runs one iteration. ``model``: the
    Shapes model folder whose denoiser is copied (only read); ``config`` and ``cfg`` as
    ``noiseppo.baselines.ddpo_diffusers.DiffusersDDPO`` takes them (``cfg = ddpo_settings(config, ...)``)."""

    def __init__(self, model: Path, config: DDPOConfig, cfg: TrainConfig) -> None:
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config, self.cfg = config, cfg
        self.backend = ShapesBackend.from_pretrained(model, "ddim")
        self.reward = get_reward(cfg.reward)
        self.prompts = load_prompts(cfg.prompts)
        self.eval_prompts = load_prompts(cfg.eval_prompts) if cfg.eval_prompts and config.eval else []
        self.backend.encode(list(dict.fromkeys(self.prompts + self.eval_prompts)))  # refuse bad prompts now
        self.tuned = copy.deepcopy(self.backend.denoiser).requires_grad_(True)
        self.model = ShapesDDPOModel(self.backend, self.tuned, cfg.steps, config.eta)
        assert isinstance(make_scheduler("ddim", self.backend.train_scheduler_config), DDIMScheduler)
        self.optimizer = torch.optim.AdamW(self.tuned.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.stats = PerPromptStats(cfg.adv_buffer, cfg.adv_min_count, cfg.advantages)
        self.iteration = 0
        self.saved_at: int | None = None  # the iteration of the checkpoint this state was last saved to or loaded from
        self.train_time = 0.0
        self.trajectory_bytes = self.stochastic_steps = 0
        # The held-out pass: the tuned weights (DDIM η = 0, rendered by a view of the backend with the
        # tuned denoiser) paired by seed with the frozen model's side, rendered once.
        self.held_out = PairedSides(
            self.backend, self.reward, self.eval_prompts, RenderSpec(cfg.steps, 1.0, cfg.eval_seeds, 0, 128)
        )
        self.view = copy.copy(self.backend)
        self.view.denoiser = self.tuned

    def step(self) -> dict[str, float]:
        """One DDPO iteration; returns its metrics row (``train_time_s``: the run's training seconds)."""
        row, traj = ddpo_iteration(
            self.model, self.optimizer, self.stats, self.reward, self.prompts, self.cfg, self.config, self.iteration
        )
        self.trajectory_bytes, self.stochastic_steps = traj.nbytes_per_sample(), sum(traj.stochastic)
        self.iteration += 1
        self.train_time += row.pop("time_s")
        row["train_time_s"] = self.train_time
        return row

    def evaluate(self) -> dict[str, float]:
        """Held-out rewards of the tuned weights, paired by seed with the frozen model's ({} without eval prompts)."""
        if not self.eval_prompts:
            return {}
        return self.held_out.row(self.held_out.side(None, self.view)[0])

    def save(self, run: Path) -> None:
        """Checkpoint the tuned denoiser, optimizer, advantage statistics and iteration into ``run/checkpoint``."""
        weights, keep = self.tuned.state_dict(), self.cfg.keep_checkpoints
        save_training(
            run / "checkpoint", "denoiser", weights, self.optimizer, self.stats, self.iteration, keep,
            train_time_s=self.train_time,
        )  # fmt: skip
        self.saved_at = self.iteration

    def load(self, run: Path) -> None:
        """Restore what ``save`` wrote (the newest checkpoint that verifies)."""
        folder, weights = run / "checkpoint", self.tuned.load_state_dict
        meta = load_training(folder, "denoiser", weights, self.optimizer, self.stats, ("train_time_s",))
        self.iteration, self.train_time = int(meta["iteration"]), float(meta["train_time_s"])
        self.saved_at = self.iteration


def train_ddpo(
    config: DDPOConfig,
    out: str | Path,
    model: str | Path | None = None,
    quiet: bool = False,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Run DDPO on the Shapes model into a new folder ``out``; returns the summary (also
    ``out/ddpo.json``). An SD pipeline with LoRA is ``noiseppo.baselines.ddpo_diffusers.train_ddpo_diffusers``."""
    cfg = ddpo_settings(config, overrides)
    if cfg.backend != "shapes":  # the CLI sends a pipeline's run to noiseppo.baselines.ddpo_diffusers
        raise UserError(f"train_ddpo runs on the Shapes model; backend '{cfg.backend}' is ddpo_diffusers'")
    return train_shapes_ddpo(config, cfg, out, str(model or cfg.model or DEFAULT_MODEL), quiet)


def train_shapes_ddpo(
    config: DDPOConfig, cfg: TrainConfig, out: str | Path, model: str, quiet: bool = False, resume: bool = False
) -> dict:
    """DDPO on the Shapes model into run folder ``out`` (new, or ``resume``d); returns the summary.
    Ctrl-C checkpoints the last finished iteration and raises ``Interrupted`` (``noiseppo.storage.run_folder``)."""
    out = Path(out)
    run = RunFolder(out, "config.json", f"noiseppo ddpo --resume {out}")
    if not resume:
        run.refuse_taken("output path exists and is not empty; choose a new one (or --resume it)")
    ddpo = ShapesDDPO(Path(model), config, cfg)  # every input is checked here, before the folder is touched
    if resume:
        ddpo.load(out)
    say = (lambda *a: None) if quiet else print
    say(batch_line(cfg, config))
    state = {"tuned": ddpo.tuned, "optimizer": ddpo.optimizer, "stats": ddpo.stats}
    peak = run_iterations(ddpo, run, config, cfg, model, resume, say, state)
    with replaced_folder(out / "model") as tmp:
        for part in ("text_encoder", "scheduler"):
            shutil.copytree(Path(model) / part, tmp / part)
        ddpo.tuned.save_pretrained(tmp / "denoiser", safe_serialization=True)
    summary = summarise(cfg, ddpo, run, peak)
    write_atomically(out / "ddpo.json", json.dumps(summary, indent=1))
    return summary


class DDPOTrainer(Protocol):
    """What ``run_iterations`` drives: ``ShapesDDPO`` and ``ddpo_diffusers.DiffusersDDPO``."""

    iteration: int
    saved_at: int | None
    train_time: float
    trajectory_bytes: int
    stochastic_steps: int

    def step(self) -> dict[str, float]: ...

    def evaluate(self) -> dict[str, float]: ...

    def save(self, run: Path) -> None: ...


def run_iterations(
    ddpo: DDPOTrainer,
    run: RunFolder,
    config: DDPOConfig,
    cfg: TrainConfig,
    model: str,
    resume: bool,
    say: Callable[[str], None],
    state: dict[str, Any],
) -> PeakRSS:
    """The run both DDPOs share, once the trainer is built (and loaded, on ``resume``): the
    settings in config.json, a new run's first checkpoint, then each iteration, its held-out pass
    when due, its row and its checkpoint when due. Ctrl-C or a failure inside an iteration puts
    back ``state`` (what an iteration changes) and checkpoints the last finished one. Returns the
    peak memory of the iterations."""
    settings = {"ddpo": dataclasses.asdict(config), "preset": dataclasses.asdict(cfg), "model": model}
    run.write_config(json.dumps(settings, indent=1))  # a resume that extends the run records it
    if not resume:
        ddpo.save(run.path)  # iteration 0, so --resume works from the start
    run.resumed_at("iteration", ddpo.iteration)
    with PeakRSS() as peak:
        while ddpo.iteration < cfg.iterations:
            with run.iteration(ddpo, cfg.iterations, **state) as finished:
                row = ddpo.step()
                done = ddpo.iteration
                if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.iterations:
                    row.update(ddpo.evaluate())
                run.append(row)
                if checkpoint_due(done, cfg.checkpoint_every, cfg.iterations):
                    ddpo.save(run.path)
                finished()
                say(row_line(row))
    return peak


def batch_line(cfg: TrainConfig, config: DDPOConfig) -> str:
    """The batch arithmetic, printed at the start of a run."""
    batch = cfg.prompts_per_iteration * cfg.samples_per_prompt
    return (
        f"ddpo: {cfg.iterations} iterations x {cfg.prompts_per_iteration} prompts x {cfg.samples_per_prompt} "
        f"samples = {cfg.iterations * batch} trajectories at {cfg.steps} steps (eta {config.eta}), "
        f"{batch // config.minibatch} optimizer steps of {config.minibatch} per epoch x {config.epochs}"
    )


def row_line(row: dict) -> str:
    """An iteration's row as the line ddpo prints (metrics.jsonl holds all of it); a held-out pass's
    as ``noiseppo train`` shows its own, on a line below."""
    from noiseppo.evaluation.held_out import held_out_line

    line = f"iteration {row['iteration']}: reward {row['reward_mean']:.3f}"
    line += "".join(f", {key} {row[key]:.2g}" for key in ("approx_kl", "clipfrac") if key in row)
    return line + (f"\n{held_out_line(row)}" if "eval_pairs" in row else "")


def summary_line(summary: dict, out: Path) -> str:
    """The line ``noiseppo ddpo`` ends with; ddpo.json holds every figure."""
    return (
        f"{summary['iterations']} iterations, {summary['trajectories']} trajectories in "
        f"{summary['train_time_s']:.0f} s of training, peak RSS {summary['peak_rss_mb']:.0f} MB; "
        f"every figure in {out / 'ddpo.json'}"
    )


def summarise(cfg: TrainConfig, ddpo: DDPOTrainer, run: RunFolder, peak: PeakRSS) -> dict:
    """ddpo.json's figures: the run's size, its training time, what a trajectory stores, the last
    row and the peak memory of the iterations."""
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    batch = cfg.prompts_per_iteration * cfg.samples_per_prompt
    return {
        "train_time_s": ddpo.train_time,
        "iterations": cfg.iterations,
        "trajectories": cfg.iterations * batch,
        "renders": cfg.iterations * batch,
        "trajectory_bytes_per_sample": ddpo.trajectory_bytes,
        "stochastic_steps": ddpo.stochastic_steps,
        "last": rows[-1] if rows else {},
        "peak_rss_mb": peak.peak_bytes / 2**20,
        "start_rss_mb": peak.start_bytes / 2**20,
    }
