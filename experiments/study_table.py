"""The study's table (docs/noise_ppo.md) from the rows ``learning_study.py`` printed.

    python experiments/study_table.py runs/study/*.log [--runs runs/study]

Each ``.log`` holds the JSON rows one ``learning_study.py`` call printed (its last line, one
JSON object with every row). The trust-region columns come from each run's ``metrics.jsonl``,
``update_kl`` (the exact KL between the policy before and after an iteration's update, per
latent dimension) as a mean over the run; clipfrac and mu_rms as means over its last 10
iterations (from the study's row). Prints the
markdown table, then one JSON object with the rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _ci(pair: list[float]) -> str:
    return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--runs", type=Path, default=Path("runs/study"))
    args = ap.parse_args()
    rows = []
    for log in args.logs:
        lines = [line for line in log.read_text().splitlines() if line.startswith('{"results"')]
        if not lines:
            continue
        for result in json.loads(lines[-1])["results"]:
            name = result["variant"] + (f"-seed{result['train_seed']}" if result["train_seed"] else "")
            metrics = [json.loads(x) for x in (args.runs / name / "metrics.jsonl").read_text().splitlines()]
            every = [r for r in metrics if "reward_mean" in r]
            # Over the whole run: a cosine schedule's last iterations barely move.
            result["update_kl"] = float(np.mean([r["update_kl"] for r in every])) if "update_kl" in every[0] else None
            result["run"] = name
            rows.append(result)
    head = "| variant | iterations | images | held-out Δ correct [95% CI] | training Δ correct [95% CI] |"
    head += " mu_rms | clipfrac | update_kl | wall s |"
    print(head)
    print("|" + " --- |" * 9)
    for r in rows:
        kl = f"{r['update_kl']:.1e}" if r["update_kl"] is not None else "-"
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] else "-"
        print(
            f"| {r['run']} | {r['iterations']} | {r['samples']:,} | {r['held_out']['correct_delta']:+.3f} "
            f"{_ci(r['held_out']['correct_ci'])} | {r['train']['correct_delta']:+.3f} {_ci(r['train']['correct_ci'])} "
            f"| {r['mu_rms']:.3f} | {r['clipfrac']:.3f} | {kl} | {wall} |"
        )
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
