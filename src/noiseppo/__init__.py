"""noiseppo: learn a prompt-conditioned initial-noise policy for a frozen text-to-image model with PPO."""

__version__ = "0.1.0"
