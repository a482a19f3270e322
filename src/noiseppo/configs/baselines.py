"""Settings of the baselines (``noiseppo search``, ``noiseppo ddpo``): light, so ``--help`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SearchConfig:
    """Settings of ``noiseppo search``."""

    budget: int = 256
    """Renders per prompt, the search's whole cost; it never renders more."""
    group: int = 16
    """Renders per prompt per generation (antithetic pairs: must be even and >= 2)."""
    grid: int = 8
    """Cells per side of the free mean (per channel), upsampled bilinearly to the latent size."""
    lr: float = 0.05
    """Adam learning rate on the cell values (the probe's value)."""
    steps: int = 4
    """Sampling steps of the frozen model."""
    guidance: float | None = None
    """Classifier-free guidance scale (default: the backend's own; 1.0 is none)."""
    seed: int = 0
    """Seed of the search's noise (see the module docstring)."""
    batch: int = 128
    """Images per forward pass."""


@dataclass
class DDPOConfig:
    """Settings of ``noiseppo ddpo``: DDPO (Black et al. 2023, the importance-sampled PPO
    variant) on the embedded Shapes model (a full copy of its denoiser) or on a diffusers Stable
    Diffusion pipeline (LoRA adapters on its U-Net). The budget comes from a Noise PPO preset, so the
    two methods see the same reward, prompts, step count and renders; the update's settings
    are ddpo-pytorch's (``config/base.py``) scaled to this model (docs/baselines.md)."""

    preset: str = "shapes"
    """The Noise PPO preset whose reward, training and held-out prompts, steps, iterations,
    prompts_per_iteration, samples_per_prompt, advantages, eval_every and eval_seeds DDPO uses."""
    iterations: int = 0
    """Iterations (each renders prompts_per_iteration x samples_per_prompt trajectories);
    0: the preset's, the same render budget as its Noise PPO."""
    lr: float = 0.0
    """AdamW learning rate; 0: ddpo-pytorch's 1e-4 (config/base.py) for LoRA adapters (--backend
    diffusers), a tenth of it, 1e-5, for the Shapes model's full fine-tune (neither tuned here)."""
    clip_range: float = 1e-4
    """PPO clip range of the per-step ratio, ddpo-pytorch's. The log-probability is the mean over
    the 3,072 latent dimensions, so 1 ± 1e-4 still allows about 0.3 nats of density per step."""
    adv_clip: float = 10.0
    """Advantages are clipped to ± this (ddpo-pytorch's adv_clip_max; rank advantages lie in ±0.5)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each optimizer step (ddpo-pytorch's)."""
    weight_decay: float = 1e-4
    """AdamW weight decay (ddpo-pytorch's)."""
    minibatch: int = 0
    """Trajectories per optimizer step; the gradient is accumulated over every stochastic
    timestep of them first, as ddpo-pytorch does. Must divide the iteration's batch; 0: a
    quarter of it (4 optimizer steps per epoch), or all of it where 4 does not divide it."""
    epochs: int = 1
    """Passes over each iteration's trajectories (ddpo-pytorch's num_inner_epochs)."""
    eta: float = 1.0
    """DDIM η of the sampler: 1 makes every step a Gaussian with a log-probability."""
    eval: bool = True
    """Render the held-out evaluation (the preset's eval_prompts x eval_seeds; Shapes: DDIM η = 0,
    diffusers: the pipeline's own scheduler) every eval_every iterations and at the end; --no-eval
    skips it (smoke tests)."""
    render_batch: int = 128
    """Trajectories sampled per forward pass."""
    lora_rank: int = 4
    """--backend diffusers: rank of the LoRA adapters on the U-Net (ddpo-pytorch's and diffusers'
    train_text_to_image_lora.py's 4); each adapted d_in x d_out layer gains rank x (d_in + d_out) weights."""
    lora_alpha: float = 4.0
    """--backend diffusers: LoRA scale numerator; the update is (alpha / rank) B A, so alpha = rank
    (diffusers' examples) applies B A as is."""
    lora_targets: str = "to_q,to_k,to_v,to_out.0"
    """--backend diffusers: comma-separated module names (peft target_modules) given adapters: the
    attention projections of every U-Net transformer block, where ddpo-pytorch puts its LoRA."""
    seed: int = 0
    """Seed of the prompt draws, the noise and the minibatch order."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
