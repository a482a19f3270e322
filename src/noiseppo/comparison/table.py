"""The table ``noiseppo compare`` prints (Markdown): one line per row of compare.json."""

from __future__ import annotations


def format_table(body: dict) -> str:
    lines = [
        "| method | renders for training | renders / reward calls per image | training wall time | peak RSS | "
        f"held-out {body['metric']} at {body['steps']} steps [95% CI] | Δ vs standard [95% CI] | own - other [95% CI] "
        "| own - mirror [95% CI] | weights change |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def control(r: dict, side: str) -> str:  # a policy's prompt-specificity; "-" for other methods
        key = f"own_minus_{side}"
        return f"{r[key]:+.3f} [{r[key + '_ci95_low']:+.3f}, {r[key + '_ci95_high']:+.3f}]" if key in r else "-"

    for r in body["rows"]:
        oracle = " (oracle reward)" if r["oracle_at_inference"] else ""
        rss = f"{r['peak_rss_mb']:.0f} MB" if r["peak_rss_mb"] else "-"
        cost = f"{r['renders_per_image']} / {r['reward_calls_per_image']}{oracle}"
        m = body["metric"]
        correct = f"{r[m]:.3f} [{r[m + '_ci95_low']:.3f}, {r[m + '_ci95_high']:.3f}]"
        delta = f"{r['delta']:+.3f} [{r['delta_ci95_low']:+.3f}, {r['delta_ci95_high']:+.3f}]"
        tuned = "yes (a copy)" if body.get("backend", "shapes") == "shapes" else "yes (LoRA)"  # DDPO's weights
        weights = tuned if r["weights_change"] else "no"
        lines.append(
            f"| {r['method']} | {r['renders_train']:,} | {cost} | {r['train_wall_s']:.0f} s | {rss} | {correct} "
            f"| {delta} | {control(r, 'other')} | {control(r, 'mirror')} | {weights} |"
        )
    return "\n".join(lines)
