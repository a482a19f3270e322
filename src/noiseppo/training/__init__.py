"""Noise PPO: advantages, the clipped update, multi-process ranks, the trainer and its loop, extending a run."""
