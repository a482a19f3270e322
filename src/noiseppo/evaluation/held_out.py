"""A held-out row of ``metrics.jsonl`` as text: per metric, standard noise against the policy on the
same seeds, with the paired difference's 95% interval. The run page's table (``noiseppo.report.page``)
and the line ``noiseppo train`` prints at each periodic held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

from noiseppo.evaluation.specificity import held_out_controls, table_controls


def eval_metrics(row: dict) -> list[str]:
    """The held-out metrics of a metrics row; "reward" only when it is the only one (for Shapes
    it repeats partial)."""
    found = [k[len("eval_standard_") :] for k in row if k.startswith("eval_standard_")]
    return [m for m in found if m != "reward"] or found


@dataclass
class HeldOutRow:
    metric: str
    standard: float
    policy: float
    delta: float
    low: float
    high: float
    controls: dict[str, str] = field(default_factory=dict)
    """own - other and own - mirror as shown (``specificity.control_cells``); {} where not measured."""


def held_out_rows(row: dict) -> list[HeldOutRow]:
    """One row per held-out metric of a row of ``metrics.jsonl``, with its prompt-specificity controls."""
    found = [k[len("eval_standard_") :] for k in row if k.startswith("eval_standard_")]
    cells = table_controls([held_out_controls(row, m) for m in found])
    return [
        HeldOutRow(
            m,
            row[f"eval_standard_{m}"],
            row[f"eval_{m}"],
            row[f"eval_{m}"] - row[f"eval_standard_{m}"],
            row[f"eval_delta_{m}_ci95_low"],
            row[f"eval_delta_{m}_ci95_high"],
            controls,
        )
        for m, controls in zip(found, cells, strict=True)
    ]


def held_out_line(row: dict) -> str:
    """One line for a periodic held-out evaluation, as the progress bar shows it."""
    by_metric = {r.metric: r for r in held_out_rows(row)}
    parts = [
        f"{m} {r.standard:.3f} -> {r.policy:.3f} ({r.delta:+.3f} [{r.low:+.3f}, {r.high:+.3f}])"
        for m, r in ((m, by_metric[m]) for m in eval_metrics(row))
    ]
    pairs = f", {row['eval_pairs']:.0f} pairs" if "eval_pairs" in row else ""
    return f"held-out at iteration {row['iteration']}{pairs}: standard -> policy, " + "; ".join(parts)
