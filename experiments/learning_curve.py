"""Held-out gain against training samples, from the periodic evaluations of training runs.

    python experiments/learning_curve.py RUN_DIR [RUN_DIR ...] [--metric correct] [--out docs/curve.png]

Reads each run's ``metrics.jsonl`` (the rows with ``eval_*`` keys, written every ``eval_every``
iterations: policy samples against standard noise on the same seeds of the held-out prompts,
with the paired difference's 95% cluster-bootstrap interval) and plots the difference against
the number of training images rendered so far, one line per run. The last line printed is one
JSON object with the plotted points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def curve(run: Path, metric: str) -> list[dict]:
    config = yaml.safe_load((run / "config.yaml").read_text())
    batch = config["prompts_per_iteration"] * config["samples_per_prompt"]
    points = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if f"eval_{metric}" not in row:
            continue
        points.append({
            "iteration": row["iteration"],
            "samples": row["iteration"] * batch,
            "delta": row[f"eval_{metric}"] - row[f"eval_standard_{metric}"],
            "ci95_low": row.get(f"eval_delta_{metric}_ci95_low"),
            "ci95_high": row.get(f"eval_delta_{metric}_ci95_high"),
        })  # fmt: skip
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--metric", default="correct")
    ap.add_argument("--out", type=Path, default=Path("docs/learning_curve.png"))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    result = {}
    for run in args.runs:
        points = curve(run, args.metric)
        result[str(run)] = points
        x = [p["samples"] for p in points]
        ax.plot(x, [p["delta"] for p in points], marker="o", label=run.name)
        if all(p["ci95_low"] is not None for p in points):
            ax.fill_between(x, [p["ci95_low"] for p in points], [p["ci95_high"] for p in points], alpha=0.2)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("training images rendered")
    ax.set_ylabel(f"held-out Δ {args.metric} (95% CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(json.dumps({"metric": args.metric, "out": str(args.out), "runs": result}))


if __name__ == "__main__":
    main()
