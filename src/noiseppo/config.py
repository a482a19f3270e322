"""Config dataclasses: every field carries a docstring, which is also its ``--help``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BaseTrainConfig:
    """Settings of ``noiseppo shapes train-base``."""

    steps: int = 5000
    """Optimizer steps. Each step renders ``batch`` fresh scenes, so there are no epochs."""
    batch: int = 64
    """Scenes per step."""
    lr: float = 5e-4
    """Peak AdamW learning rate, reached after ``warmup`` steps, then cosine decay to 10%."""
    warmup: int = 200
    """Linear learning-rate warm-up, in steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average whose weights are exported."""
    uncond_prob: float = 0.1
    """Probability of replacing a prompt by the empty prompt (classifier-free guidance)."""
    dim: int = 128
    """Width of the denoiser at its 8x8 bottleneck (half of it at 16x16, a quarter at 32x32)."""
    depth: int = 4
    """Transformer blocks at the denoiser's bottleneck."""
    text_dim: int = 64
    """Width of the text encoder (and of the token states a noise policy conditions on)."""
    seed: int = 0
    """Seed of the dataset, the initialisation, the timesteps and the noise."""
    checkpoint_every: int = 250
    """Steps between resumable checkpoints."""
    eval_every: int = 500
    """Steps between quick evaluations (EMA weights, shapes-test, 50 DDIM steps)."""
    eval_prompts: int = 32
    """Prompts of shapes-test (one seed each) in the quick evaluation."""
    eval_guidance: float = 1.0
    """Guidance scale of the quick evaluation."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
