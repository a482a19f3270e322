"""compare.json's keys (docs/baselines.md documents each; a test keeps the two in step).

::

    {"prompts": "shapes-test", "seeds": 4, "seed": 0, "steps": 4, "reward": "shapes", "metric": "correct",
     "pairs": 592, "methods": [...],
     "rows": [{"method": "best-of-4", "renders_train": 0, "renders_per_image": 4,
               "reward_calls_per_image": 4, "oracle_at_inference": true, "train_wall_s": 0.0,
               "peak_rss_mb": null, "weights_change": false, "n": 592,
               "correct": 0.41, "correct_ci95_low": 0.37, "correct_ci95_high": 0.45,
               "delta": 0.17, "delta_ci95_low": 0.14, "delta_ci95_high": 0.20, "partial": 0.70,
               "note": "..."}, ...],
     "search_curve": [{"renders_per_prompt": 32, "correct": ..., "correct_ci95_low": ..., ...}, ...],
     "curves": {"noise-ppo": [{"iteration": 40, "train_time_s": ..., "eval_correct": ...}], "ddpo": [...]},
     "against_best_of_n": {...}, "against_ddpo": {...}}

The metric is the reward's verdict where it gives one (Shapes: ``correct``), else the reward
itself (``reward``); its keys in the rows are named after it.
"""

from __future__ import annotations

TOP_KEYS = (
    "prompts",
    "seeds",
    "seed",
    "steps",
    "reward",
    "metric",
    "pairs",
    "methods",
    "standard",
    "rows",
    "search_curve",
    "curves",
    "against_best_of_n",
    "against_ddpo",
)
"""The keys of compare.json (docs/baselines.md documents each)."""
OPTIONAL_TOP_KEYS = ("backend", "model")
"""Keys a run on another backend than shapes adds: the backend and the model it compared on."""
ROW_KEYS = (
    "method",
    "renders_train",
    "renders_per_image",
    "reward_calls_per_image",
    "oracle_at_inference",
    "train_wall_s",
    "peak_rss_mb",
    "rss_rise_mb",
    "weights_change",
    "note",
    "n",
    "correct",
    "correct_ci95_low",
    "correct_ci95_high",
    "delta",
    "delta_ci95_low",
    "delta_ci95_high",
)
"""The keys of every row."""
SPECIFICITY_KEYS = tuple(
    f"own_minus_{side}{end}" for side in ("other", "mirror") for end in ("", "_ci95_low", "_ci95_high")
) + ("other_pairs", "mirror_pairs")
"""Keys of a policy's rows (``noise-ppo``, ``noise-ppo-blind``, ``policy:NAME``): ``evaluation.specificity``."""
OPTIONAL_ROW_KEYS = ("reward", "partial", "trajectory_bytes_per_sample", *SPECIFICITY_KEYS)
"""Keys some rows add: the reward's mean and its numeric details (Shapes: partial); DDPO's stored
bytes; a policy's prompt-specificity (own - other, own - mirror)."""
BASE_ROW = {
    "renders_train": 0,
    "renders_per_image": 1,
    "reward_calls_per_image": 0,
    "oracle_at_inference": False,
    "train_wall_s": 0.0,
    "peak_rss_mb": None,
    "rss_rise_mb": None,
    "weights_change": False,
    "note": "",
}
"""A row's cost keys before its method fills them: no training, one render, no reward at inference."""
