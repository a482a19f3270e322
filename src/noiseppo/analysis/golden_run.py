"""The ``noiseppo golden`` driver: render the shared-noise reward matrices, analyse, write outputs.

Noise ``j`` is the standard noise of seed ``sample_seed(seed, 0, j)``: the noise of image ``j``
that ``noiseppo sample --prompt P --seed SEED`` draws for a single prompt, whatever ``P`` is.
Every prompt is rendered from the same noises, so column ``j`` of a reward matrix is one noise.

Output folder (``golden.json``'s schema is in docs/golden_noise.md):

* ``golden.json``: settings and every figure;
* ``matrices.safetensors``: the reward matrices (``{metric}_steps{S}``, prompts × noises) and
  the policy comparison (``policy_{kind}_{metric}``, prompts × seeds), so that
  ``noiseppo golden --from DIR`` re-analyses without rendering;
* ``heatmap.png``, ``steps.png``;
* ``best_noises_steps{S}.safetensors``: the top-k noises, tensor ``latents`` (k, C, H, W) in
  N(0, I) units, ready for ``backend.generate`` or a pipeline's ``latents=``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from noiseppo.analysis import golden
from noiseppo.backends.base import Backend
from noiseppo.errors import UserError
from noiseppo.policy import NoisePolicy
from noiseppo.rewards.base import Reward
from noiseppo.sampling.render import RenderSpec, encode_distinct
from noiseppo.sampling.render_and_score import score_chunks
from noiseppo.sampling.seeds import sample_seed, standard_noise

KINDS = ("standard", "own", "same_template", "other_template", "generic")
"""The noises of the policy comparison: standard ε; the prompt's own policy latents μ(A) + σ(A) ε;
those of another prompt B of the same template, and of another template; the prompt-generic
shift mean_c μ(c) + mean_c σ(c) ε. All rendered with prompt A, paired by ε."""


def noise_seeds(seed: int, n: int) -> list[int]:
    """The seeds of the ``n`` shared noises (see the module docstring)."""
    return [sample_seed(seed, 0, j) for j in range(n)]


def prompt_templates(prompts: Sequence[str]) -> list[str] | None:
    """The Shapes template of every prompt, or None when a prompt is outside the Shapes grammar."""
    from noiseppo.shapes.grammar import PromptError, parse

    try:
        return [parse(p).template for p in prompts]
    except PromptError:
        return None


def score_jobs(
    backend: Backend,
    reward: Reward,
    prompts: Sequence[str],
    latents_of: Callable[[np.ndarray], torch.Tensor],
    spec: RenderSpec,
    with_reward: bool = False,
) -> dict[str, np.ndarray]:
    """Render job ``t`` (prompt ``prompts[t]``, latents ``latents_of([t])``) for every job, at
    ``spec``'s steps, guidance and batch, and score it: metric → one value per job (the reward's
    details, else the reward; ``with_reward``: the reward beside its details). The jobs bring
    their own latents: ``spec``'s seeds and seed are not read."""

    def rendered() -> Iterator[tuple[list[str], torch.Tensor]]:  # each next() renders one batch
        for start in range(0, len(prompts), spec.batch):
            jobs = np.arange(start, min(start + spec.batch, len(prompts)))
            conditioning = encode_distinct(backend, [prompts[t] for t in jobs])  # N noises: one row per prompt
            latents = latents_of(jobs).to(conditioning.pooled)
            images = backend.generate(latents, conditioning, spec.steps, spec.guidance)
            yield conditioning.prompts, images.cpu()

    rewards, details = score_chunks(rendered(), reward, spec.overlap)
    if with_reward or not details:
        return {"reward": rewards.numpy().astype(np.float64), **details}
    return details


def reward_matrices(
    backend: Backend,
    reward: Reward,
    prompts: Sequence[str],
    seeds: Sequence[int],
    spec: RenderSpec,
    with_reward: bool = False,
) -> dict[str, np.ndarray]:
    """metric → (prompts, noises): every prompt rendered from every shared noise of ``seeds``
    (``score_jobs``'s metrics), at ``spec``'s steps, guidance and batch."""
    eps = standard_noise(backend.latent_shape, seeds)
    n = len(seeds)
    jobs = [p for p in prompts for _ in range(n)]
    flat = score_jobs(backend, reward, jobs, lambda t: eps[t % n], spec, with_reward)
    return {metric: values.reshape(len(prompts), n) for metric, values in flat.items()}


def partners(templates: list[str] | None, seed: int) -> dict[str, np.ndarray]:
    """For each prompt A, a mismatched prompt B of the same template and one of another template
    (seeded). Without templates (prompts outside the Shapes grammar) there is no mismatch: {}."""
    if templates is None:
        return {}
    rng = np.random.default_rng(seed)
    labels = np.array(templates)
    out: dict[str, list[int]] = {"same_template": [], "other_template": []}
    for a, label in enumerate(labels):
        same = np.flatnonzero((labels == label) & (np.arange(len(labels)) != a))
        other = np.flatnonzero(labels != label)
        if len(same) == 0 or len(other) == 0:
            raise UserError(
                f"prompt {a} ('{label}' template): the policy comparison needs another prompt of its template "
                "and one of another template; give more prompts or no --policy"
            )
        out["same_template"].append(int(rng.choice(same)))
        out["other_template"].append(int(rng.choice(other)))
    return {k: np.array(v) for k, v in out.items()}


def policy_scores(
    policy: NoisePolicy,
    backend: Backend,
    reward: Reward,
    prompts: list[str],
    templates: list[str] | None,
    spec: RenderSpec,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, list[int]]]:
    """kind → metric → (prompts, ``spec.seeds``) for the kinds of ``KINDS``, and the partner prompt of
    each prompt for the mismatched kinds. ε of (prompt i, seed j) follows the project's seed rule,
    so ``standard`` and ``own`` are the images ``noiseppo eval`` calls standard and policy."""
    seeds, seed = spec.seeds, spec.seed
    with torch.no_grad():
        mean, log_sigma = policy(backend.encode(prompts))
    sigma = torch.exp(log_sigma)
    rows = np.repeat(np.arange(len(prompts)), seeds)
    eps = standard_noise(
        backend.latent_shape, [sample_seed(seed, i, j) for i in range(len(prompts)) for j in range(seeds)]
    )
    source = {"own": np.arange(len(prompts)), **partners(templates, seed)}
    jobs_prompts = [prompts[i] for i in rows]
    out: dict[str, dict[str, np.ndarray]] = {}
    for kind in KINDS:
        if kind == "standard":
            fn = lambda jobs: eps[jobs]  # noqa: E731
        elif kind == "generic":
            fn = lambda jobs: mean.mean(0) + sigma.mean(0) * eps[jobs]  # noqa: E731
        elif kind in source:
            b = source[kind][rows]
            fn = lambda jobs, b=b: mean[b[jobs]] + sigma[b[jobs]] * eps[jobs]  # noqa: E731
        else:
            continue
        flat = score_jobs(backend, reward, jobs_prompts, fn, spec)
        out[kind] = {metric: v.reshape(len(prompts), seeds) for metric, v in flat.items()}
    return out, {k: v.tolist() for k, v in source.items() if k != "own"}


def analyse_steps(
    matrices: dict[str, np.ndarray],
    templates: list[str] | None,
    top_k: int,
    splits: int,
    bootstrap: int,
    permutations: int,
    seed: int,
    common: int,
) -> list[dict]:
    """One result per metric of one step count: decomposition, consistency, transfer, best noises.
    ``transfer_common`` repeats the transfer test on the first ``common`` noises (those every step
    count has): the top k of fewer noises are less extreme, so only it compares across step counts."""
    rows = []
    for metric, y in matrices.items():
        consistency = {"overall": golden.rank_consistency(y, permutations, seed)}
        if templates is not None:
            consistency["templates"] = {
                name: golden.rank_consistency(y[idx], permutations, seed)
                for name, idx in golden.group_indices(templates).items()
            }
        rows.append(
            {
                "metric": metric,
                "prompts": int(y.shape[0]),
                "noises": int(y.shape[1]),
                "mean": float(y.mean()),
                "decomposition": golden.decompose(y, bootstrap, seed),
                "consistency": consistency,
                "transfer": golden.transfer(y, top_k, splits, seed),
                "transfer_common": {"noises": common, **golden.transfer(y[:, :common], top_k, splits, seed)},
                "best_noises": golden.best_noises(y, top_k),
            }
        )
    return rows


def headline_metric(metrics: Sequence[str]) -> str:
    """The metric the figures show: ``correct`` where the reward has it (Shapes), else the first."""
    return "correct" if "correct" in metrics else metrics[0]


def golden_header(
    settings: dict,
    prompts: list[str],
    plan: dict[int, int],
    seed: int,
    guidance: float,
    latent_shape: Sequence[int],
    matrices: dict[int, dict[str, np.ndarray]],
) -> dict:
    """golden.json's settings of a run that rendered ``matrices`` (``render_all``): ``settings`` as
    the user gave them (backend, model, scheduler, reward, prompts), then what they resolved to (the
    prompts, the step counts and noises of ``plan``, the noises' seeds, the metrics)."""
    metrics = list(next(iter(matrices.values())))
    return {
        **settings,
        "n_prompts": len(prompts),
        "seed": seed,
        "guidance": guidance,
        "steps": list(plan),
        "noises": list(plan.values()),
        "noise_seeds": noise_seeds(seed, max(plan.values())),
        "latent_shape": list(latent_shape),
        "metrics": metrics,
        "headline_metric": headline_metric(metrics),
        "prompt_list": prompts,
        "templates": prompt_templates(prompts),
    }


def plot_heatmaps(matrices: dict[int, np.ndarray], metric: str, path: Path) -> None:
    """Prompts × noises, both sorted by their means (best top-left), one panel per step count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(matrices), figsize=(1.2 + 2.4 * len(matrices), 3.8), dpi=100, squeeze=False, layout="constrained"
    )
    for ax, (steps, y) in zip(axes[0], matrices.items(), strict=True):
        rows = np.argsort(-y.mean(1), kind="stable")
        cols = np.argsort(-y.mean(0), kind="stable")
        image = ax.imshow(y[rows][:, cols], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{steps} steps")
        ax.set_xlabel("noise (sorted)")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_ylabel("prompt (sorted)")
    fig.colorbar(image, ax=axes[0].tolist(), label=metric, fraction=0.05, shrink=0.8)
    fig.savefig(path)
    plt.close(fig)


def plot_steps(results: list[dict], path: Path) -> None:
    """Noise share of the variance and transfer gain of the top-k noises against steps, one line
    per metric, 95% intervals. An undefined share (a matrix without variance) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=100)
    for colour, metric in enumerate(dict.fromkeys(r["metric"] for r in results)):
        sel = [r for r in results if r["metric"] == metric]
        shares = [(r["steps"], r["decomposition"]["noise"]["share"], r["decomposition"]["noise"]["ci95"]) for r in sel]
        gains = [(r["steps"], r["transfer_common"]["gain"]["mean"], r["transfer_common"]["gain"]["ci95"]) for r in sel]
        for ax, points in ((left, shares), (right, gains)):
            pairs = [(s, v, ci) for s, v, ci in points if np.isfinite(v)]
            if not pairs:
                continue
            x = np.log2([s for s, _, _ in pairs])  # evenly spaced doublings, labelled by the step count
            mid = np.array([v for _, v, _ in pairs])
            err = np.array([[v - ci[0] for _, v, ci in pairs], [ci[1] - v for _, v, ci in pairs]])
            ax.errorbar(x, mid, yerr=np.maximum(err, 0), marker="o", capsize=3, label=metric, color=f"C{colour}")
    steps = sorted({r["steps"] for r in results})
    common = results[0]["transfer_common"]["noises"]
    titles = ("noise share of the variance", f"top-k of {common} noises - all, new prompts")
    for ax, label in zip((left, right), titles, strict=True):
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(np.log2(steps), [str(s) for s in steps])
        ax.set_xlabel("sampling steps")
        ax.set_title(f"{label} (95% CI)", fontsize=10)
        if ax.get_legend_handles_labels()[0]:  # nothing to label where every share is undefined
            ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(
    folder: Path,
    header: dict,
    results: list[dict],
    policy: dict | None,
    matrices: dict[int, dict[str, np.ndarray]],
    policy_raw: dict[str, dict[str, np.ndarray]] | None,
    latent_shape: Sequence[int],
) -> None:
    """golden.json, matrices.safetensors, the two figures and the best noises into ``folder``."""
    tensors = {f"{m}_steps{s}": y for s, per in matrices.items() for m, y in per.items()}
    for kind, per in (policy_raw or {}).items():
        tensors.update({f"policy_{kind}_{m}": v for m, v in per.items()})
    save_numpy({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "matrices.safetensors"))
    files = {"matrices": "matrices.safetensors", "heatmap": "heatmap.png", "steps": "steps.png", "best_noises": {}}
    for r in results:
        if r["metric"] != header["headline_metric"]:
            continue
        name = f"best_noises_steps{r['steps']}.safetensors"
        seeds = [header["noise_seeds"][j] for j in r["best_noises"]]
        latents = standard_noise(latent_shape, seeds)
        save_torch(
            {"latents": latents}, str(folder / name), metadata={"seeds": json.dumps(seeds), "steps": str(r["steps"])}
        )
        files["best_noises"][str(r["steps"])] = name
    metric = header["headline_metric"]
    plot_heatmaps({s: per[metric] for s, per in matrices.items()}, metric, folder / "heatmap.png")
    plot_steps(results, folder / "steps.png")
    document = finite({**header, "files": files, "results": results, "policy": policy})
    (folder / "golden.json").write_text(json.dumps(document, indent=1, allow_nan=False))


def finite(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN): a share of
    a matrix without variance, or a ratio to a zero gain, is undefined, not a number."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def summary_line(header: dict, results: list[dict], policy: dict | None) -> dict:
    """The headline figures as one JSON object (the command's last line)."""
    return finite(_summary(header, results, policy))


def _summary(header: dict, results: list[dict], policy: dict | None) -> dict:
    metric = header["headline_metric"]
    line: dict = {"metric": metric, "prompts": header["n_prompts"]}
    for r in results:
        if r["metric"] != metric:
            continue
        d, c, t = r["decomposition"], r["consistency"]["overall"], r["transfer"]
        line[f"steps{r['steps']}"] = {
            "noises": r["noises"],
            "mean": round(r["mean"], 4),
            "noise_share": d["noise"]["share"],
            "noise_share_ci95": d["noise"]["ci95"],
            "prompt_share": d["prompt"]["share"],
            "interaction_share": d["interaction"]["share"],
            **{
                f"{name}{suffix}": c[name] and c[name][field]
                for name in ("spearman", "kendall_w")
                for suffix, field in (("", "value"), ("_p", "p"))
            },
            "topk_gain": t["gain"]["mean"],
            "topk_gain_ci95": t["gain"]["ci95"],
            "common_noises": r["transfer_common"]["noises"],
            "topk_gain_common": r["transfer_common"]["gain"]["mean"],
            "topk_gain_common_ci95": r["transfer_common"]["gain"]["ci95"],
        }
    if policy is not None:
        kinds = policy["metrics"][metric]["kinds"]
        line["policy"] = {
            "name": policy["name"],
            "steps": policy["steps"],
            **{f"{k}_delta": v["delta"] for k, v in kinds.items() if k != "standard"},
            **{f"{k}_surviving": v["surviving"] for k, v in kinds.items() if "surviving" in v},
        }
    return line


def format_table(results: list[dict]) -> str:
    """Per step count and metric: noise / prompt / interaction shares, Spearman, W, top-k gain."""
    head = f"{'steps':>5} {'metric':<8}{'noises':>7}{'mean':>7}{'noise':>7}{'prompt':>7}{'inter':>7}"
    lines = [head + f"{'rho':>8}{'p':>7}{'W':>7}{'gain':>8}{'95% CI':>18}"]
    nan = float("nan")
    for r in results:
        d, c, t = r["decomposition"], r["consistency"]["overall"], r["transfer"]
        rho, p = (c["spearman"]["value"], c["spearman"]["p"]) if c["spearman"] else (nan, nan)
        w = c["kendall_w"]["value"] if c["kendall_w"] else nan
        ci = f"[{t['gain']['ci95'][0]:+.3f}, {t['gain']['ci95'][1]:+.3f}]"
        lines.append(
            f"{r['steps']:>5} {r['metric']:<8}{r['noises']:>7}{r['mean']:>7.3f}{d['noise']['share']:>7.3f}"
            f"{d['prompt']['share']:>7.3f}{d['interaction']['share']:>7.3f}{rho:>+8.3f}{p:>7.3f}{w:>7.3f}"
            f"{t['gain']['mean']:>+8.3f}{ci:>18}"
        )
    return "\n".join(lines)


def render_all(
    backend: Backend,
    reward: Reward,
    prompts: list[str],
    plan: dict[int, int],
    spec: RenderSpec,
    policy: NoisePolicy | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[int, dict[str, np.ndarray]], dict | None, dict | None]:
    """Render everything: the reward matrices of ``plan`` (steps → noises), then, with a policy,
    its comparison as ``spec`` renders it (``spec.steps``, ``spec.seeds`` per prompt). The matrices
    share the seed, guidance and batch of ``spec``; their steps and noises are the plan's.
    Returns (matrices, policy scores, partners)."""
    import time

    seeds = noise_seeds(spec.seed, max(plan.values()))
    matrices = {}
    for steps, n in plan.items():
        start = time.time()
        matrices[steps] = reward_matrices(backend, reward, prompts, seeds[:n], dataclasses.replace(spec, steps=steps))
        log(f"steps {steps}: {len(prompts)} prompts x {n} noises in {time.time() - start:.0f} s")
    if policy is None:
        return matrices, None, None
    start = time.time()
    raw, chosen = policy_scores(policy, backend, reward, prompts, prompt_templates(prompts), spec)
    log(
        f"policy at {spec.steps} steps: {len(prompts)} prompts x {spec.seeds} seeds x {len(raw)} kinds "
        f"in {time.time() - start:.0f} s"
    )
    return matrices, raw, chosen


def analyse_all(
    header: dict,
    prompts: list[str],
    matrices: dict[int, dict[str, np.ndarray]],
    policy_raw: dict | None,
    top_k: int,
    splits: int,
    bootstrap: int,
    permutations: int,
) -> tuple[list[dict], dict | None]:
    """Every figure of golden.json from the cached scores: (results, policy comparison)."""
    templates = prompt_templates(prompts)
    results = []
    common = min(int(next(iter(per.values())).shape[1]) for per in matrices.values())
    for steps, per in matrices.items():
        for row in analyse_steps(per, templates, top_k, splits, bootstrap, permutations, header["seed"], common):
            results.append({"steps": steps, **row})
    if policy_raw is None:
        return results, None
    metrics = list(policy_raw["standard"])
    policy = {
        "metrics": {
            m: golden.specificity({k: v[m] for k, v in policy_raw.items()}, bootstrap * 10, header["seed"])
            for m in metrics
        },
    }
    return results, policy


def load_cached(folder: Path) -> tuple[dict, dict[int, dict[str, np.ndarray]], dict | None]:
    """(golden.json, matrices, policy scores) of a previous ``noiseppo golden`` output folder."""
    from noiseppo.storage.safe_load import load_tensors, read_json

    folder = Path(folder)
    if not (folder / "golden.json").is_file():
        raise UserError(f"{folder}: not a noiseppo golden output folder (no golden.json)")
    saved = read_json(folder / "golden.json")
    tensors = {k: v.numpy().astype(np.float64) for k, v in load_tensors(folder / "matrices.safetensors").items()}
    matrices: dict[int, dict[str, np.ndarray]] = {}
    for steps in saved["steps"]:
        matrices[steps] = {m: tensors[f"{m}_steps{steps}"] for m in saved["metrics"]}
    policy_raw = None
    if saved.get("policy") is not None:
        policy_raw = {
            kind: {m: tensors[f"policy_{kind}_{m}"] for m in saved["metrics"]}
            for kind in KINDS
            if f"policy_{kind}_{saved['metrics'][0]}" in tensors
        }
    return saved, matrices, policy_raw


SAME = ("backend", "model", "scheduler", "reward", "seed", "guidance", "latent_shape", "metrics", "prompt_list")
"""What folders merged by ``--from`` must share: they are columns of one experiment."""


def merge_cached(folders: Sequence[Path]) -> tuple[dict, dict[int, dict[str, np.ndarray]], dict | None, dict | None]:
    """Several output folders of one experiment (other step counts) as one:
    (header, matrices by step count in increasing order, policy scores, policy settings)."""
    header: dict | None = None
    matrices: dict[int, dict[str, np.ndarray]] = {}
    policy_raw = policy_info = None
    for folder in folders:
        saved, per_steps, raw = load_cached(folder)
        if header is None:
            header = {k: v for k, v in saved.items() if k not in ("files", "results", "policy")}
        for key in SAME:
            if saved[key] != header[key]:
                raise UserError(f"--from {folder}: its {key} differs from that of {folders[0]}; merge one experiment")
        for steps in per_steps:
            if steps in matrices:
                raise UserError(f"--from {folder}: step count {steps} is also in another folder")
        matrices.update(per_steps)
        if len(saved["noise_seeds"]) > len(header["noise_seeds"]):
            header["noise_seeds"] = saved["noise_seeds"]  # the same sequence: one is a prefix of the other
        if raw is not None:
            if policy_raw is not None:
                raise UserError(f"--from {folder}: a second folder with a policy comparison; give one")
            policy_raw = raw
            policy_info = {k: v for k, v in saved["policy"].items() if k != "metrics"}
    assert header is not None
    matrices = dict(sorted(matrices.items()))
    header["steps"] = list(matrices)
    header["noises"] = [int(next(iter(m.values())).shape[1]) for m in matrices.values()]
    return header, matrices, policy_raw, policy_info
