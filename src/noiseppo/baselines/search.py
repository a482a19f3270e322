"""Per-prompt black-box noise search (``noiseppo search``): a test-time baseline and a user feature.

Each prompt gets a free low-resolution mean, ``grid`` x ``grid`` cells per channel, upsampled
bilinearly to the latent shape (the form of the noise policy's output). Every generation
renders ``group`` latents per prompt, ``up(m) ± ε`` in antithetic pairs, scores them with the
reward (any black box: a registered reward, ``module:function``, an HTTP reward server),
turns the scores into centred ranks within the prompt (in [-0.5, 0.5]; 0 for a group
without spread), and moves the cells along Σ rank·ε with Adam (an evolution strategy, the
probe "per-prompt black-box search" of the project's notes: 0.315 → 0.596 correct at 4
steps with 480 renders per prompt). Nothing is differentiated through the model or the
reward, which is what ReNO needs and lacks here.

Budget: ``budget`` renders per prompt; ``budget // group`` generations run, so the search
never renders more than ``budget`` (the rest of the budget, if ``group`` does not divide it,
is left unused and reported). Deterministic for a seed: the ε of generation ``g`` is the
standard noise of ``sample_seed(generation_seed(seed, g), i, j)``, j < group/2, i the
prompt's index, and its antithetic twin is -ε. Those seeds never coincide with the
images of ``noiseppo sample --seed s`` (sample indices ``j`` of base seed ``s``), so the
searched mean can be evaluated on fresh seeds: ``z = up(m) + ε`` with ε of ``sample --seed s``
pairs each searched image with the standard image of that seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from noiseppo.backends.base import Backend, Conditioning, resolve_guidance
from noiseppo.configs.baselines import SearchConfig
from noiseppo.errors import UserError
from noiseppo.evaluation.grid import Block, Cell, prompt_grid
from noiseppo.images import to_pil
from noiseppo.rewards.base import Reward
from noiseppo.sampling.render import LatentsFn, RenderSpec
from noiseppo.sampling.render_and_score import score_side
from noiseppo.sampling.seeds import SEARCH_STREAM, sample_seed, standard_noise
from noiseppo.training.advantages import centred_ranks


def generation_seed(seed: int, generation: int) -> int:
    """The base seed of generation ``generation``'s noise."""
    return sample_seed(seed, SEARCH_STREAM, generation)


def check_search(config: SearchConfig) -> None:
    """Refuse a search that cannot run, before anything is loaded or written."""
    if config.group < 2 or config.group % 2:
        raise UserError(f"--group must be an even number >= 2 (antithetic pairs), got {config.group}")
    if config.budget < config.group:
        raise UserError(
            f"--budget {config.budget} is below one generation of --group {config.group} renders per prompt"
        )
    if config.grid < 1:
        raise UserError(f"--grid must be >= 1, got {config.grid}")
    if not 0 < config.lr < float("inf"):
        raise UserError(f"--lr must be a finite number > 0, got {config.lr}")


@dataclass
class SearchResult:
    cells: torch.Tensor  # (P, C, grid, grid): the final free means
    best_latents: torch.Tensor  # (P, *latent_shape): the highest-reward latents seen
    best_images: torch.Tensor  # (P, 3, H, W)
    best_reward: np.ndarray  # (P,)
    best_seed: list[int]  # the seed of the best latents' ε ...
    best_sign: list[int]  # ... and its sign: best_latents = up(mean at that generation) + sign * ε(seed)
    best_render: list[int]  # 1-based render count (per prompt) at which it was found
    renders: int = 0  # renders per prompt actually used
    log: list[dict] = field(default_factory=list)  # one row per generation
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # renders per prompt -> cells


def upsample(cells: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
    return F.interpolate(cells, size=tuple(latent_shape[1:]), mode="bilinear", align_corners=False)


def mean_latents_fn(
    cells: torch.Tensor, prompts: Sequence[str], latent_shape: Sequence[int], sign: int = 1
) -> LatentsFn:
    """ε → up(m_c) + sign·ε, with m_c the cells of the row's prompt (matched on the encoded text)."""
    means = upsample(cells.detach(), latent_shape)
    row_of = {p: k for k, p in enumerate(prompts)}

    def fn(conditioning: Conditioning, eps: torch.Tensor) -> torch.Tensor:
        rows = [row_of[p] for p in conditioning.prompts]
        return means[rows].to(eps) + sign * eps

    return fn


def search(
    backend: Backend,
    reward: Reward,
    prompts: Sequence[str],
    config: SearchConfig,
    snapshot_at: Sequence[int] = (),
) -> SearchResult:
    """Optimise one free mean per prompt within ``config.budget`` renders per prompt."""
    check_search(config)
    texts = backend.encode(list(prompts)).prompts  # the encoded texts name the rows in mean_latents_fn
    if len(set(texts)) != len(texts):
        twice = next(t for t in texts if texts.count(t) > 1)
        raise UserError(f"prompt '{twice}' is given twice; search optimises one mean per distinct prompt")
    shape = tuple(backend.latent_shape)
    guidance = resolve_guidance(backend, config.guidance)
    n_prompts, half = len(texts), config.group // 2
    cells = torch.zeros(n_prompts, shape[0], config.grid, config.grid, requires_grad=True)
    optimizer = torch.optim.Adam([cells], lr=config.lr, maximize=True)
    best_reward = np.full(n_prompts, -np.inf)
    best_latents = torch.zeros(n_prompts, *shape)
    best_images: torch.Tensor | None = None
    best_seed, best_sign, best_render = [0] * n_prompts, [1] * n_prompts, [0] * n_prompts
    result = SearchResult(cells, best_latents, torch.empty(0), best_reward, best_seed, best_sign, best_render)
    start = time.perf_counter()
    for g in range(config.budget // config.group):
        base = generation_seed(config.seed, g)
        means = upsample(cells.detach(), shape)
        rewards, eps, images = [], [], []
        for sign in (1, -1):
            fn = mean_latents_fn(cells, texts, shape, sign)
            metrics, samples = score_side(
                backend, reward, texts, RenderSpec(config.steps, guidance, half, base, config.batch), fn
            )
            batch_images = torch.stack([s.image for s in samples])
            rewards.append(metrics["reward"].reshape(n_prompts, half))
            eps.append(sign * standard_noise(shape, [s.seed for s in samples]).view(n_prompts, half, *shape))
            images.append(batch_images.view(n_prompts, half, *batch_images.shape[1:]))
            seeds = np.array([s.seed for s in samples]).reshape(n_prompts, half)
        got = np.concatenate(rewards, 1)  # (P, group) rewards: the + half, then the - half
        noise, rendered = torch.cat(eps, 1), torch.cat(images, 1)
        if best_images is None:
            best_images = torch.zeros(n_prompts, *rendered.shape[2:])
        advantages = np.zeros_like(got)
        for p in range(n_prompts):
            finite = np.isfinite(got[p])
            if finite.sum() >= 2 and np.ptp(got[p][finite]) > 0:
                advantages[p, finite] = centred_ranks(got[p][finite])
            if finite.any() and np.nanmax(got[p]) > best_reward[p]:
                k = int(np.nanargmax(got[p]))
                best_reward[p] = got[p, k]
                best_latents[p] = means[p] + noise[p, k]
                best_images[p] = rendered[p, k]
                best_seed[p], best_sign[p] = int(seeds[p, k % half]), 1 if k < half else -1
                best_render[p] = g * config.group + k + 1
        # The gradient of E[reward] w.r.t. the upsampled mean is E[A ε]; autograd carries it
        # back through the bilinear upsampling to the cells.
        direction = torch.einsum("pk,pk...->p...", torch.from_numpy(advantages).float(), noise) / config.group
        optimizer.zero_grad()
        (upsample(cells, shape) * direction).sum().backward()
        optimizer.step()
        result.renders = (g + 1) * config.group
        result.log.append(
            {
                "generation": g,
                "renders": result.renders,
                "reward_mean": float(np.nanmean(got)),
                "best_reward_mean": float(np.mean(best_reward[np.isfinite(best_reward)]))
                if np.isfinite(best_reward).any()
                else float("nan"),
                "mean_rms": float(upsample(cells.detach(), shape).pow(2).mean().sqrt()),
                "time_s": time.perf_counter() - start,
            }
        )
        for b in snapshot_at:  # the search a budget of b would have stopped at
            if result.renders <= b < result.renders + config.group:
                result.snapshots[b] = cells.detach().clone()
    result.cells = cells.detach()
    result.best_images = best_images
    return result


def write_search(
    folder: str | Path, result: SearchResult, prompts: Sequence[str], config: SearchConfig, header: dict
) -> None:
    """latents.safetensors, images/NNNN.png (the best image of prompt NNNN), grid.png and search.json.

    ``latents.safetensors`` holds ``best_latents`` (P, C, H, W): render them with the frozen
    model at ``config.steps`` to get the images again; ``cells`` (P, C, grid, grid), the final
    free means; and ``mean`` (P, C, H, W), their upsampling: ``mean[i] + ε`` with the ε of
    ``noiseppo sample --seed s`` draws fresh images of prompt i.
    """
    folder = Path(folder)
    shape = result.best_latents.shape[1:]
    save_file(
        {
            "best_latents": result.best_latents.contiguous(),
            "cells": result.cells.contiguous(),
            "mean": upsample(result.cells, shape).contiguous(),
        },
        folder / "latents.safetensors",
    )
    (folder / "images").mkdir()
    pil = [to_pil(image) for image in result.best_images]
    for i, image in enumerate(pil):
        image.save(folder / "images" / f"{i:04d}.png")
    blocks = [
        Block(p, [Cell(image, f"render {n}", score=float(r))])
        for p, image, r, n in zip(prompts, pil, result.best_reward, result.best_render, strict=True)
    ]
    prompt_grid(blocks[:48], f"noiseppo search: the best of {result.renders} renders per prompt").save(
        folder / "grid.png"
    )
    rows = [
        {
            "prompt": p,
            "image": f"images/{i:04d}.png",
            "best_reward": float(result.best_reward[i]),
            "best_render": result.best_render[i],
            "best_seed": result.best_seed[i],
            "best_sign": result.best_sign[i],
        }
        for i, p in enumerate(prompts)
    ]
    body = {**header, "config": dataclasses.asdict(config), "renders_per_prompt": result.renders}
    body.update(prompts=rows, log=result.log)
    (folder / "search.json").write_text(json.dumps(body, indent=1))
