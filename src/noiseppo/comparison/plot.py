"""compare.png: each row's held-out metric with its interval, beside the search curve (or the
trained methods' held-out metric against training time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    rows, m = result["rows"], result["metric"]
    y = np.arange(len(rows))
    means = np.array([r[m] for r in rows])
    err = np.array([[r[m] - r[m + "_ci95_low"] for r in rows], [r[m + "_ci95_high"] - r[m] for r in rows]])
    left.barh(y, means, xerr=err, capsize=3, color="#7a9cc6")
    left.set_yticks(y, [r["method"] for r in rows])
    left.invert_yaxis()
    left.set_xlabel(f"held-out {m} at {result['steps']} steps (95% CI)")
    curve = result["search_curve"]
    if curve:
        xs = [c["renders_per_prompt"] for c in curve]
        ms = np.array([c[m] for c in curve])
        e = np.array([[c[m] - c[m + "_ci95_low"] for c in curve], [c[m + "_ci95_high"] - c[m] for c in curve]])
        right.errorbar(xs, ms, yerr=e, marker="o", capsize=3, label="search (fresh seeds)")
        right.axhline(result["standard"][m], color="grey", linewidth=0.8, label="standard")
        right.set_xscale("log", base=2)
        right.set_xlabel("search renders per prompt")
        right.set_ylabel(f"held-out {m}")
        right.legend()
    elif result["curves"]:  # no search: the trained methods' held-out metric against training time
        for name, points in result["curves"].items():
            right.plot([c["train_time_s"] for c in points], [c[f"eval_{m}"] for c in points], marker="o", label=name)
        right.axhline(result["standard"][m], color="grey", linewidth=0.8, label="standard")
        right.set_xlabel("training wall time (s, without held-out passes)")
        right.set_ylabel(f"held-out {m}")
        right.legend()
    else:
        right.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
