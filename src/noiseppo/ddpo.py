"""DDPO on the embedded Shapes model (``noiseppo ddpo``): the baseline that changes the weights.

Black et al. 2023, the importance-sampled PPO variant (DDPO_IS), on a *copy* of the frozen
denoiser (the shipped files are only read). Each iteration:

1. draws prompts and initial noise as Noise PPO does, and samples with DDIM at η = 1, so every
   step x_t → x_{t-1} is a Gaussian N(mean_θ(x_t, t), σ_t²) with a log-probability;
2. stores the whole trajectory (every x_t and each step's log-probability): what Noise PPO
   never stores, and what ``trajectory_bytes_per_sample`` reports;
3. scores the final images with the reward and turns them into the preset's per-prompt advantages;
4. runs PPO over the timesteps: for each minibatch, every stochastic step is recomputed with
   gradients through the denoiser, ratio = exp(log p_θ − log p_old), the clipped surrogate is
   accumulated over the steps and one AdamW step is taken.

The log-probability is the mean over latent dimensions (ddpo-pytorch's convention, with its
clip range 1e-4). The mean of each step is what diffusers' ``DDIMScheduler.step`` returns with
zero variance noise; its σ_t is η·sqrt(``_get_variance``), diffusers' own. A step whose σ_t is
0 is deterministic and carries no log-probability: with ``timestep_spacing="trailing"`` and
``set_alpha_to_one``, the last step (to ᾱ = 1) is one, so at 4 steps three steps are trained.
Held-out evaluation renders with the project's sampler (DDIM, η = 0) and the tuned weights,
from the same initial noise as the standard side, so its pairs match ``noiseppo eval``'s.

The run folder::

    config.json    the DDPOConfig and the preset's settings it used
    metrics.jsonl  one row per iteration (reward, approx_kl, clipfrac, first_ratio, time) and eval rows
    model/         a Shapes model folder (text_encoder/, scheduler/ copied; denoiser/ tuned),
                   which ``noiseppo sample --model RUN/model`` renders with
    ddpo.json      the summary: wall time, peak RSS, trajectory bytes, the last held-out row
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler

from noiseppo.advantages import PerPromptStats
from noiseppo.backends.base import Conditioning
from noiseppo.backends.shapes import DEFAULT_MODEL, ShapesBackend, make_scheduler
from noiseppo.baseline_config import DDPOConfig
from noiseppo.config import TrainConfig
from noiseppo.errors import UserError
from noiseppo.files import new_output_dir
from noiseppo.memory import PeakRSS
from noiseppo.paired import paired_row
from noiseppo.policy import gaussian_log_prob
from noiseppo.presets import resolve
from noiseppo.prompts import load_prompts
from noiseppo.rewards import get_reward
from noiseppo.rewards.scoring import score_with_details
from noiseppo.sampling import encode_distinct
from noiseppo.seeds import sample_seed
from noiseppo.sides import score_side

DDPO_STREAM = 2**43
"""Sample index under which DDPO draws each iteration's generator (disjoint from Noise PPO's)."""


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


@dataclass
class Trajectories:
    xs: torch.Tensor  # (N, S + 1, *latent): x_T (the initial noise) ... x_0
    log_probs: torch.Tensor  # (N, S): log p_old of each step (0 where deterministic)
    timesteps: torch.Tensor  # (S,)
    stochastic: list[bool]  # (S,): σ_t > 0

    def nbytes_per_sample(self) -> int:
        return (self.xs.nbytes + self.log_probs.nbytes) // len(self.xs)


def denoise(denoiser, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    return denoiser(x, t, cond.token_states, cond.pooled, cond.mask).float()


@torch.no_grad()
def sample_trajectories(
    denoiser, scheduler: DDIMScheduler, cond: Conditioning, latents: torch.Tensor, eta: float,
    generator: torch.Generator,
) -> Trajectories:  # fmt: skip
    """Sample x_T = ``latents`` → x_0 at ``eta``, keeping every x_t and every step's log-probability."""
    xs, lps, stochastic = [latents * scheduler.init_noise_sigma], [], []
    for t in scheduler.timesteps:
        x = xs[-1]
        noise = torch.randn(x.shape, generator=generator)
        prev_x, lp, _, std = ddim_step_with_logprob(scheduler, denoise(denoiser, x, t, cond), t, x, eta, noise=noise)
        xs.append(prev_x)
        lps.append(lp)
        stochastic.append(std > 0)
    return Trajectories(torch.stack(xs, 1), torch.stack(lps, 1), scheduler.timesteps.clone(), stochastic)


def images_of(trajectories: Trajectories) -> torch.Tensor:
    return ((trajectories.xs[:, -1] + 1) / 2).clamp(0, 1)


def ppo_minibatch(
    denoiser, scheduler: DDIMScheduler, cond: Conditioning, traj: Trajectories, advantages: torch.Tensor,
    config: DDPOConfig, order: list[int],
) -> dict[str, float]:  # fmt: skip
    """Accumulate the clipped surrogate's gradient over the stochastic steps (in ``order``)."""
    stats = {"approx_kl": 0.0, "clipfrac": 0.0, "first_ratio_dev": 0.0, "loss": 0.0}
    steps = [k for k in order if traj.stochastic[k]]
    for n, k in enumerate(steps):
        t = traj.timesteps[k]
        out = denoise(denoiser, traj.xs[:, k], t, cond)
        _, lp, _, _ = ddim_step_with_logprob(scheduler, out, t, traj.xs[:, k], config.eta, prev_x=traj.xs[:, k + 1])
        ratio = torch.exp(lp - traj.log_probs[:, k])
        clipped = torch.clamp(ratio, 1 - config.clip_range, 1 + config.clip_range)
        loss = torch.maximum(-advantages * ratio, -advantages * clipped).mean()
        (loss / len(steps)).backward()
        with torch.no_grad():
            diff = lp - traj.log_probs[:, k]
            stats["approx_kl"] += float(0.5 * (diff**2).mean()) / len(steps)
            stats["clipfrac"] += float(((ratio - 1).abs() > config.clip_range).float().mean()) / len(steps)
            stats["loss"] += float(loss) / len(steps)
            if n == 0:
                stats["first_ratio_dev"] = float((ratio - 1).abs().max())
    return stats


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
    for key in ("clip_range", "lr"):
        if not 0 < getattr(config, key) < float("inf"):
            raise UserError(f"--{key.replace('_', '-')} must be a finite number > 0, got {getattr(config, key)}")
    if not 0 < config.eta <= 1:
        raise UserError(f"--eta must be in (0, 1], got {config.eta} (DDPO needs stochastic steps)")
    if preset.backend != "shapes":
        raise UserError(f"DDPO runs on the embedded Shapes model; preset '{config.preset}' uses '{preset.backend}'")
    return preset


def evaluate_tuned(backend: ShapesBackend, tuned, reward, prompts, cfg: TrainConfig, standard) -> dict[str, float]:
    """Held-out rewards of the tuned weights (DDIM η = 0), paired with the standard side by seed."""
    view = copy.copy(backend)  # the same backend, rendering with the tuned denoiser
    view.denoiser = tuned
    metrics, samples = score_side(view, reward, prompts, cfg.steps, cfg.eval_seeds, 1.0, 0, 128, None)
    return paired_row(standard, metrics, np.array([s.prompt_index for s in samples]))


def train_ddpo(
    config: DDPOConfig,
    out: str | Path,
    model: str | Path | None = None,
    quiet: bool = False,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Run DDPO into a new folder ``out``; returns the summary (also ``out/ddpo.json``)."""
    cfg = ddpo_settings(config, overrides)
    if config.threads:
        torch.set_num_threads(config.threads)
    model = Path(model or DEFAULT_MODEL)
    backend = ShapesBackend.from_pretrained(model, "ddim")
    reward = get_reward(cfg.reward)
    prompts = load_prompts(cfg.prompts)
    eval_prompts = load_prompts(cfg.eval_prompts) if cfg.eval_prompts and config.eval else []
    backend.encode(list(dict.fromkeys(prompts + eval_prompts)))
    tuned = copy.deepcopy(backend.denoiser).requires_grad_(True)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stats = PerPromptStats(cfg.adv_buffer, cfg.adv_min_count, cfg.advantages)
    scheduler = DDIMScheduler.from_config(backend.train_scheduler_config, timestep_spacing="trailing")
    scheduler.set_timesteps(cfg.steps)
    assert isinstance(make_scheduler("ddim", backend.train_scheduler_config), DDIMScheduler)
    batch = cfg.prompts_per_iteration * cfg.samples_per_prompt
    say = (lambda *a: None) if quiet else print
    say(
        f"ddpo: {cfg.iterations} iterations x {cfg.prompts_per_iteration} prompts x {cfg.samples_per_prompt} "
        f"samples = {cfg.iterations * batch} trajectories at {cfg.steps} steps (eta {config.eta}), "
        f"{batch // config.minibatch} optimizer steps of {config.minibatch} per epoch x {config.epochs}"
    )
    rows, traj_bytes, train_time = [], 0, 0.0
    with new_output_dir(out) as tmp, PeakRSS() as peak:
        standard = None
        if eval_prompts:
            standard, _ = score_side(backend, reward, eval_prompts, cfg.steps, cfg.eval_seeds, 1.0, 0, 128, None)
        for it in range(cfg.iterations):
            start = time.perf_counter()
            generator = torch.Generator().manual_seed(sample_seed(config.seed, it, DDPO_STREAM))
            chosen = torch.randperm(len(prompts), generator=generator)[: cfg.prompts_per_iteration]
            texts = [prompts[i] for i in chosen.tolist() for _ in range(cfg.samples_per_prompt)]
            eps = torch.randn(len(texts), *backend.latent_shape, generator=generator)
            if cfg.antithetic:  # as Noise PPO draws its noise: each group's second half mirrors its first
                groups = eps.view(cfg.prompts_per_iteration, cfg.samples_per_prompt, -1)
                half = cfg.samples_per_prompt // 2
                groups[:, half:] = -groups[:, :half]
            cond = encode_distinct(backend, texts)
            parts = [
                sample_trajectories(tuned, scheduler, cond.select(list(range(s, min(s + config.render_batch, batch)))),
                                    eps[s : s + config.render_batch], config.eta, generator)
                for s in range(0, batch, config.render_batch)
            ]  # fmt: skip
            traj = Trajectories(
                torch.cat([p.xs for p in parts]), torch.cat([p.log_probs for p in parts]),
                parts[0].timesteps, parts[0].stochastic,
            )  # fmt: skip
            traj_bytes = traj.nbytes_per_sample()
            scores, _ = score_with_details(reward, images_of(traj), texts)  # the reward reads the prompts as given
            adv, _ = stats.advantages(cond.prompts, scores.numpy())
            adv_t = torch.from_numpy(np.clip(adv, -config.adv_clip, config.adv_clip)).float()
            logged: dict[str, float] = {}
            first_ratio = 0.0
            for epoch in range(config.epochs):
                perm = torch.randperm(batch, generator=generator).tolist()
                for m in range(0, batch, config.minibatch):
                    rows_m = perm[m : m + config.minibatch]
                    sub = Trajectories(traj.xs[rows_m], traj.log_probs[rows_m], traj.timesteps, traj.stochastic)
                    order = torch.randperm(len(traj.timesteps), generator=generator).tolist()
                    optimizer.zero_grad()
                    got = ppo_minibatch(tuned, scheduler, cond.select(rows_m), sub, adv_t[rows_m], config, order)
                    if epoch == 0 and m == 0:
                        first_ratio = got["first_ratio_dev"]
                    grad_norm = torch.nn.utils.clip_grad_norm_(tuned.parameters(), config.max_grad_norm)
                    optimizer.step()
                    for key in ("approx_kl", "clipfrac", "loss"):
                        logged[key] = logged.get(key, 0.0) + got[key] / (config.epochs * batch // config.minibatch)
                    logged["grad_norm"] = float(grad_norm)
            train_time += time.perf_counter() - start
            row = {"iteration": it + 1, "reward_mean": float(np.nanmean(scores.numpy())), **logged,
                   "first_ratio_dev": first_ratio, "train_time_s": train_time}  # fmt: skip
            if eval_prompts and ((cfg.eval_every and (it + 1) % cfg.eval_every == 0) or it + 1 == cfg.iterations):
                row.update(evaluate_tuned(backend, tuned, reward, eval_prompts, cfg, standard))
            rows.append(row)
            say(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
        (tmp / "model").mkdir()
        for part in ("text_encoder", "scheduler"):
            shutil.copytree(model / part, tmp / "model" / part)
        tuned.save_pretrained(tmp / "model" / "denoiser", safe_serialization=True)
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        settings = {"ddpo": dataclasses.asdict(config), "preset": dataclasses.asdict(cfg), "model": str(model)}
        (tmp / "config.json").write_text(json.dumps(settings, indent=1))
        summary = {
            "train_time_s": train_time,
            "iterations": cfg.iterations,
            "trajectories": cfg.iterations * batch,
            "renders": cfg.iterations * batch,
            "trajectory_bytes_per_sample": traj_bytes,
            "stochastic_steps": sum(traj.stochastic) if cfg.iterations else 0,
            "last": rows[-1] if rows else {},
        }
        summary["peak_rss_mb"] = peak.peak_bytes / 2**20  # sampled so far; the file write adds nothing large
        summary["start_rss_mb"] = peak.start_bytes / 2**20
        (tmp / "ddpo.json").write_text(json.dumps(summary, indent=1))
    return summary
