"""The configs: the Noise PPO and baseline dataclasses, the YAML presets beside them, and the schedule they imply."""
