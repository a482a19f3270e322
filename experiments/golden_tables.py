"""The tables of docs/golden_noise.md from a ``noiseppo golden`` output folder.

    python experiments/golden_tables.py runs/golden

Reads ``golden.json`` (nothing is rendered) and prints four markdown tables: the variance
decomposition, the rank consistency (overall and per template), the transfer test, and the
policy comparison; then one JSON object with the headline figures (the command's own last line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ci(pair: list[float] | None, digits: int = 3) -> str:
    return "n/a" if pair is None or None in pair else f"[{pair[0]:+.{digits}f}, {pair[1]:+.{digits}f}]"


def _num(value: float | None, fmt: str = "+.3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def decomposition_table(results: list[dict]) -> list[str]:
    lines = [
        "| steps | metric | noises | mean | noise (golden) | prompt | noise × prompt | SS share of noise |",
        "| ---: | --- | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for r in results:
        d = r["decomposition"]
        defined = [d[p] for p in ("noise", "prompt", "interaction")]
        cells = [f"{x['share']:+.3f} {_ci(x['ci95'])}" if x and x["share"] is not None else "n/a" for x in defined]
        ss = _num(d["noise"]["ss_share"], ".4f") if d["noise"] else "n/a"
        lines.append(f"| {r['steps']} | {r['metric']} | {r['noises']} | {r['mean']:.3f} | {' | '.join(cells)} | {ss} |")
    return lines


def _stat(test: dict, name: str) -> str:
    s = test[name]
    return "n/a" if s is None else f"{s['value']:+.3f} (null {s['null_mean']:+.3f}, p {s['p']:.3f})"


def consistency_table(results: list[dict]) -> list[str]:
    lines = [
        "| steps | metric | prompts | mean pairwise Spearman | Kendall's W |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for r in results:
        groups = {"all": r["consistency"]["overall"], **r["consistency"].get("templates", {})}
        for name, test in groups.items():
            used = f"{name}: {test['prompts_used']}/{test['prompts']}"
            lines.append(
                f"| {r['steps']} | {r['metric']} | {used} | {_stat(test, 'spearman')} | {_stat(test, 'kendall_w')} |"
            )
    return lines


def transfer_table(results: list[dict]) -> list[str]:
    k, common = results[0]["transfer"]["k"], results[0]["transfer_common"]["noises"]
    lines = [
        f"| steps | metric | noises | top-{k} | {k} random | {k} worst | all noises | top − all | worst − all "
        f"| top − all, first {common} noises |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in results:
        t, c = r["transfer"], r["transfer_common"]["gain"]
        means = " | ".join(f"{t[x]['mean']:.3f}" for x in ("top", "random", "worst", "all"))
        gaps = " | ".join(f"{t[x]['mean']:+.3f} {_ci(t[x]['ci95'])}" for x in ("gain", "worst_gap"))
        lines.append(
            f"| {r['steps']} | {r['metric']} | {r['noises']} | {means} | {gaps} | {c['mean']:+.3f} {_ci(c['ci95'])} |"
        )
    return lines


def policy_table(policy: dict) -> list[str]:
    lines = [
        "| metric | noise | mean | Δ vs standard (95% CI) | share of the own gain kept (95% CI) |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for metric, result in policy["metrics"].items():
        for kind, row in result["kinds"].items():
            kept = "" if "surviving" not in row else f"{_num(row['surviving'], '.2f')} {_ci(row['surviving_ci95'], 2)}"
            delta = "" if kind == "standard" else f"{row['delta']:+.3f} {_ci(row['delta_ci95'])}"
            lines.append(f"| {metric} | {kind} | {row['mean']:.3f} | {delta} | {kept} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="a noiseppo golden --out folder")
    args = ap.parse_args()
    from noiseppo.analysis.golden_run import summary_line  # after the arguments: --help answers at once

    doc = json.loads((args.folder / "golden.json").read_text())
    results = doc["results"]
    print("\n".join(decomposition_table(results)), end="\n\n")
    print("\n".join(consistency_table(results)), end="\n\n")
    print("\n".join(transfer_table(results)), end="\n\n")
    if doc["policy"] is not None:
        p = doc["policy"]
        print(f"policy {p['name']} at {p['steps']} steps, {doc['n_prompts']} prompts x {p['seeds']} seeds")
        print("\n".join(policy_table(p)), end="\n\n")
    print(json.dumps(summary_line(doc, results, doc["policy"])))


if __name__ == "__main__":
    main()
