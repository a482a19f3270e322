"""One self-contained HTML page per run or evaluation (``noiseppo report``).

Built only from the files a run or an evaluation already writes (``config.yaml``,
``metrics.jsonl``, ``run.json``, ``policy/``; ``eval.json`` and its PNGs), with Jinja2
(autoescaping on: a prompt or a path holding HTML is shown as text) and matplotlib. Every
plot and image is inline as a ``data:`` URI, the page has no script, and nothing is fetched
from the network, so the file opens anywhere, offline, and can be attached or pasted as is.

A run's page: a header, the resolved config with each key's docstring, the batch arithmetic,
the training curves, the held-out before/after table, a side-by-side grid of a few held-out
prompts (rendered when the page is built, from the run's latest policy), the time split and
the warnings the run's own numbers raise. An evaluation's page: the per-step table, the gain
plot and the grids per step count. A run still writing ``metrics.jsonl`` gets a page of what
is there; a row cut short by a kill or by the writer is skipped and counted.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noiseppo.configs.schedule import one_update_per_rollout
from noiseppo.errors import UserError
from noiseppo.evaluation.held_out import HeldOutRow, eval_metrics, held_out_rows
from noiseppo.storage.files import write_atomically

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT = "report.html"
ZERO_SPREAD_WARN = 0.25
"""Warn when more than this fraction of an iteration's prompt groups had identical rewards."""
SIGMA_FLOOR_MARGIN = 1.02
"""σ counts as collapsed when its mean is within 2% of its floor exp(-log_sigma_max)."""
CHECKPOINT_INTERVAL_S = 60.0
"""``noiseppo train`` rewrites the page at a checkpoint only if the last one is at least this old
(and always at the end): a page costs a few seconds, a checkpoint may come every few seconds."""


# -- what a folder is -------------------------------------------------------------------------
def folder_kind(folder: Path) -> str:
    """ "run" (``config.yaml``, as ``noiseppo train`` writes first), "eval" (``eval.json``) or
    "compare" (``compare.json``)."""
    if (folder / "config.yaml").is_file():
        return "run"
    if (folder / "eval.json").is_file():
        return "eval"
    if (folder / "compare.json").is_file():
        return "compare"
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise UserError(f"{folder}: {what} (give a run, eval or compare folder)")
    raise UserError(
        f"{folder}: neither a run folder (config.yaml, from noiseppo train), an eval folder "
        "(eval.json, from noiseppo eval) nor a compare folder (compare.json, from noiseppo compare)"
    )


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of a ``metrics.jsonl`` and the number of lines that are not a JSON object
    (a row cut short while the run was writing it)."""
    if not path.is_file():
        return [], 0
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict) and isinstance(row.get("iteration"), (int, float)):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


# -- images and plots -------------------------------------------------------------------------
def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_uri(image) -> str:
    """A PIL image as an inline PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return data_uri(buffer.getvalue())


def _figure():
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(3.7, 2.5), dpi=90)  # three to a row of the page
    return fig, fig.subplots()


def _figure_uri(fig, ax, xlabel: str, ylabel: str) -> str:
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.2, bottom=0.19, right=0.97, top=0.9)  # fixed: tight_layout costs more than the plot
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return data_uri(buffer.getvalue())


@dataclass
class Plot:
    title: str
    uri: str
    note: str = ""


@dataclass
class Curve:
    """A training curve: what it shows, its unit, and the metrics.jsonl keys it draws."""

    title: str
    unit: str
    keys: tuple[str, ...]
    note: str = ""


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["iteration"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def curve_plots(rows: list[dict], curves: Sequence[Curve]) -> list[Plot]:
    """One plot per curve whose keys metrics.jsonl holds; reward_mean gets its ± std band."""
    plots = []
    for curve in curves:
        present = [k for k in curve.keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
        if not present:
            continue
        fig, ax = _figure()
        for key in present:
            x, y = _series(rows, key)
            ax.plot(x, y, linewidth=1.2, label=key if len(present) > 1 else None)
            if key == "reward_mean":
                xs, std = _series(rows, "reward_std")
                if xs == x:
                    low = [a - s for a, s in zip(y, std, strict=True)]
                    ax.fill_between(x, low, [a + s for a, s in zip(y, std, strict=True)], alpha=0.2)
        ax.set_title(curve.title, fontsize=9)
        plots.append(Plot(curve.title, _figure_uri(fig, ax, "iteration", curve.unit), curve.note))
    return plots


def held_out_plots(rows: list[dict]) -> list[Plot]:
    """Per held-out metric: standard noise against the policy over the run, the policy's 95% CI
    (the paired difference's interval, shifted by the standard mean) as error bars."""
    evals = [r for r in rows if any(k.startswith("eval_standard_") for k in r)]
    if not evals:
        return []
    plots = []
    for metric in eval_metrics(evals[-1]):
        sel = [r for r in evals if f"eval_{metric}" in r]
        x = [r["iteration"] for r in sel]
        base = [r[f"eval_standard_{metric}"] for r in sel]
        after = [r[f"eval_{metric}"] for r in sel]
        low = [a - (b + r[f"eval_delta_{metric}_ci95_low"]) for a, b, r in zip(after, base, sel, strict=True)]
        high = [(b + r[f"eval_delta_{metric}_ci95_high"]) - a for a, b, r in zip(after, base, sel, strict=True)]
        fig, ax = _figure()
        ax.plot(x, base, "--", color="grey", label="standard noise")
        ax.errorbar(x, after, yerr=[low, high], marker="o", capsize=3, label="policy (95% CI)")
        ax.set_title(f"held-out {metric}", fontsize=9)
        plots.append(Plot(f"held-out {metric}", _figure_uri(fig, ax, "iteration", f"{metric} (mean per image)")))
    return plots


# -- the held-out table and line ------------------------------------------------------------------
def control_notes(measured: bool, missing: str) -> list[str]:
    """Under a table: what own - other and own - mirror mean, or ``missing``, why they are not there."""
    from noiseppo.evaluation import specificity

    return specificity.control_notes() if measured else [f"own - other and own - mirror: {missing}"]


@dataclass
class GroupRow:
    group: str
    pairs: int
    cells: list[tuple[float, float, float]]  # per metric: delta, CI low, CI high


def group_table(row: dict) -> tuple[list[str], list[GroupRow]]:
    """The held-out gain per group of prompts (their Shapes template, or a .jsonl "group" field;
    ``paired.group_rows``): the metrics shown and one row per group."""
    groups = sorted(
        k[len("eval_group_") : -len("_pairs")] for k in row if k.startswith("eval_group_") and k.endswith("_pairs")
    )
    metrics = [m for m in eval_metrics(row) if groups and f"eval_group_{groups[0]}_delta_{m}" in row]
    rows = []
    for g in groups:
        name = f"eval_group_{g}_delta_"
        cells = [(row[name + m], row[name + m + "_ci95_low"], row[name + m + "_ci95_high"]) for m in metrics]
        rows.append(GroupRow(g, int(row[f"eval_group_{g}_pairs"]), cells))
    return metrics, rows


# -- a run's page -------------------------------------------------------------------------------
def curves(config) -> list[Curve]:
    """The run's curves; a curve the run's settings hold still says why under it."""
    per = "per latent dimension" if config.logprob == "mean" else "per sample, summed over latent dimensions"
    one_step = one_update_per_rollout(config)
    still = (
        " 0 throughout by construction: with one PPO step per iteration (1 epoch, the whole batch) the "
        "gradient is taken at ratio 1, before the policy has moved"
        if one_step
        else ""
    )
    return [
        Curve("reward (mean ± std over the batch)", "reward (the reward's own units)", ("reward_mean",)),
        Curve("training batch, verifier", "fraction of images", ("train_correct", "train_partial")),
        Curve(
            "policy_kl: KL(π_old ‖ π_new)", "nats per latent dimension", ("policy_kl",), "before each PPO step." + still
        ),
        Curve("approx_kl", f"nats, {per}", ("approx_kl",), "cleanrl's (ratio - 1) - log ratio." + still),
        Curve("clipfrac", "fraction of samples", ("clipfrac",), "ratio outside [1-ε, 1+ε]." + still),
        Curve("kl_prior: KL(π ‖ N(0, I))", f"nats, {per}", ("kl_prior",)),
        Curve("mu_rms: size of the learned mean", "N(0, I) units (RMS over latents)", ("mu_rms",)),
        Curve(
            "sigma_mean",
            "N(0, I) units (1: standard noise)",
            ("sigma_mean",),
            "" if config.learn_sigma else "1 throughout: learn_sigma is off, σ stays 1",
        ),
        Curve("zero_spread_groups", "fraction of prompt groups", ("zero_spread_groups",), "identical rewards"),
        Curve("samples/s", "images per second", ("samples_per_s",), "rollout and update of one iteration"),
        Curve("learning rate", "AdamW lr", ("lr",)),
        Curve("grad_norm", "L2 norm before clipping", ("grad_norm",)),
    ]


@dataclass
class ConfigRow:
    key: str
    value: Any
    doc: str
    changed: bool
    """Differs from the dataclass default (set by the preset, a file or an override)."""


@dataclass
class TimeRow:
    name: str
    seconds: float
    share: float


@dataclass
class RunPage:
    folder: str
    header: list[tuple[str, str]]
    config: list[ConfigRow]
    batch: str
    plots: list[Plot]
    held_out_plots: list[Plot]
    held_out: list[HeldOutRow]
    held_out_caption: str
    grid: list[GridBlock]
    grid_caption: str
    times: list[TimeRow]
    warnings: list[str]
    notes: list[str]
    unplotted: list[str] = field(default_factory=list)
    group_metrics: list[str] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    control_notes: list[str] = field(default_factory=list)


def _config_rows(config) -> list[ConfigRow]:
    from noiseppo.configs.train import TrainConfig
    from noiseppo.dataclass_args import field_docs
    from noiseppo.rewards.base import redacted

    docs, default = field_docs(TrainConfig), TrainConfig()
    rows = []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        shown = redacted(value) if f.name == "reward" else value  # a reward URL's fragment may hold a token
        rows.append(ConfigRow(f.name, shown, docs.get(f.name, ""), value != getattr(default, f.name)))
    return rows


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min {s:02d} s" if hours else f"{m} min {s:02d} s" if m else f"{s} s"


def _wall_time(seconds: float, rows: list[dict]) -> str:
    if not seconds:
        return "no iteration yet"
    walls = [r["time_wall"] for r in rows if isinstance(r.get("time_wall"), (int, float))]
    if walls:  # the real one: start-up, iterations, held-out passes and writing; resumed sessions added up
        return f"{_duration(walls[-1])}: the run's real wall time, start to last row (resumed sessions added up)"
    if any("time_eval" in r for r in rows):
        return f"{_duration(seconds)}: the iterations' and the held-out evaluations' own times, summed"
    return f"{_duration(seconds)}: the iterations' own times, summed (the run did not record its evaluations' times)"


def _times(config, rows: list[dict]) -> tuple[list[TimeRow], float]:
    """Seconds spent rendering, waiting for the reward, updating and evaluating, summed over the
    rows; and the wall time they add up to (each iteration's own time, plus the evaluations')."""
    batch = config.prompts_per_iteration * config.samples_per_prompt
    train = [r for r in rows if isinstance(r.get("samples_per_s"), (int, float)) and r["samples_per_s"] > 0]
    iteration_s = sum(batch / r["samples_per_s"] for r in train)
    wait = "time_reward_wait" if any("time_reward_wait" in r for r in train) else "time_reward"
    parts = {
        "sampling (policy and frozen model)": sum(r.get("time_sampling", 0.0) for r in train),
        "reward (time the run waited for it)" if wait == "time_reward_wait" else "reward": sum(
            r.get(wait, 0.0) for r in train
        ),
        "PPO update": sum(r.get("time_update", 0.0) for r in train),
    }
    parts["other (advantages, policy statistics)"] = max(0.0, iteration_s - sum(parts.values()))
    evals = sum(r.get("time_eval", 0.0) for r in rows)
    if evals:
        parts["held-out evaluations"] = evals
    total = iteration_s + evals
    return [TimeRow(k, v, v / total if total else 0.0) for k, v in parts.items()], total


def _warnings(config, rows: list[dict], bad_lines: int) -> list[str]:
    out = []
    if bad_lines:
        out.append(f"{bad_lines} line(s) of metrics.jsonl are not a complete JSON row and were skipped")
    train = [r for r in rows if "reward_mean" in r]
    dropped = sum(r.get("nan_rewards", 0.0) for r in train)
    if dropped:
        hit = [r for r in train if r.get("nan_rewards")]
        worst = max(hit, key=lambda r: r["nan_rewards"])
        out.append(
            f"{dropped:.0f} NaN rewards dropped, in {len(hit)} of {len(train)} iterations (at most "
            f"{worst['nan_rewards']:.0f} at iteration {worst['iteration']})"
        )
    spread = [r for r in train if r.get("zero_spread_groups", 0.0) > ZERO_SPREAD_WARN]
    if spread:
        mean = sum(r["zero_spread_groups"] for r in train) / len(train)
        out.append(
            f"in {len(spread)} of {len(train)} iterations more than {ZERO_SPREAD_WARN:.0%} of the prompt groups "
            f"had identical rewards (no learning signal); {mean:.0%} of groups on average"
        )
    sigma = [r for r in train if "sigma_mean" in r]
    floor = math.exp(-config.log_sigma_max)
    if config.learn_sigma and sigma and sigma[-1]["sigma_mean"] <= floor * SIGMA_FLOOR_MARGIN:
        out.append(
            f"σ collapsed: sigma_mean is {sigma[-1]['sigma_mean']:.3f} at iteration {sigma[-1]['iteration']}, "
            f"at its floor exp(-log_sigma_max) = {floor:.3f}: the policy has stopped exploring"
        )
    evals = [r for r in rows if any(k.startswith("eval_standard_") for k in r)]
    if evals:
        worse = [r.metric for r in held_out_rows(evals[-1]) if r.high < 0]
        if worse:
            out.append(f"held-out {', '.join(worse)}: the policy is worse than standard noise (95% CI below 0)")
    return out


@dataclass
class Live:
    """What a running ``noiseppo train`` already holds, so its report need not load it again."""

    backend: Any
    policy: Any
    reward: Any
    iteration: int


@dataclass
class GridCell:
    uri: str
    text: str
    verdict: str  # "ok", "wrong" or "" (a reward without a verdict): the CSS class


@dataclass
class GridBlock:
    prompt: str
    cells: list[GridCell]


def _load(run: Path, config) -> Live:
    """The run's latest policy, its frozen model and its reward, as ``noiseppo eval`` loads them."""
    from noiseppo.backends import get_backend
    from noiseppo.policy import check_policy, load_policy
    from noiseppo.rewards import get_reward
    from noiseppo.storage.checkpoint import latest_step

    policy = load_policy(run)
    backend = get_backend(config.backend, config.model or None, config.scheduler, config.device, config.dtype)
    check_policy(policy, backend)
    return Live(backend, policy, get_reward(config.reward), latest_step(run / "checkpoint") or 0)


def _grid(config, live: Live, guidance: float) -> tuple[list[GridBlock], str]:
    """The showcase grid (``noiseppo.evaluation.showcase``) of the policy in ``live``, rendered now."""
    from noiseppo.evaluation import showcase
    from noiseppo.evaluation.grid import cell_text
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.render import RenderSpec
    from noiseppo.sampling.seeds import EVAL_SEED

    prompts = load_prompts(config.eval_prompts)
    spec = RenderSpec(config.steps, guidance, showcase.SEEDS, EVAL_SEED)
    blocks = showcase.side_by_side(live.backend, live.policy, live.reward, prompts, spec)
    shown = []
    for block in blocks:
        cells = []
        for cell in block.cells:
            verdict = "" if cell.correct is None else "ok" if cell.correct else "wrong"
            cells.append(GridCell(image_uri(cell.image), cell_text(cell)[0], verdict))
        shown.append(GridBlock(block.prompt, cells))
    caption = (
        f"{len(blocks)} of the {len(prompts)} held-out prompts ({config.eval_prompts}), spread evenly, "
        f"{showcase.SEEDS} seeds each: standard noise against the policy of iteration {live.iteration} on the "
        f"same seed (the held-out evaluation's seeds, sample_seed({EVAL_SEED}, prompt, sample)), "
        f"{config.steps} steps, guidance {guidance:g}; rendered when this page was built"
    )
    return shown, caption


def _held_out(config, rows: list[dict]) -> tuple[list[HeldOutRow], str]:
    evals = [r for r in rows if any(k.startswith("eval_standard_") for k in r)]
    if not evals:
        return [], "no held-out evaluation yet" if config.eval_prompts else "no held-out prompts (eval_prompts empty)"
    last = evals[-1]
    pairs = f"{last['eval_pairs']:.0f} pairs" if "eval_pairs" in last else f"{config.eval_seeds} seed(s) per prompt"
    caption = (
        f"held-out {config.eval_prompts} at iteration {last['iteration']}, {pairs}, {config.steps} steps: the "
        "same seeds with standard noise and with the policy; the delta's 95% interval is a cluster bootstrap "
        "over prompts"
    )
    return held_out_rows(last), caption


def run_page(run: Path, live: Live | None = None) -> RunPage:
    """Everything a run's section shows. ``live``: from a running ``noiseppo train``; otherwise
    the run's latest policy is loaded to render the grid."""
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.configs.presets import resolve
    from noiseppo.configs.schedule import batch_arithmetic
    from noiseppo.rewards.base import redacted

    config = resolve(config_file=str(run / "config.yaml"))
    rows, bad = read_rows(run / "metrics.jsonl")
    done = max((int(r["iteration"]) for r in rows), default=0)
    times, wall = _times(config, rows)
    warnings = _warnings(config, rows, bad)
    grid, grid_caption, guidance = [], "no held-out prompts (eval_prompts is empty)", config.guidance
    if config.eval_prompts:  # the grid needs the policy and the frozen model: loaded only for it
        try:
            live = live if live is not None else _load(run, config)
            guidance = resolve_guidance(live.backend, config.guidance)
            grid, grid_caption = _grid(config, live, guidance)
        except UserError as e:
            grid_caption = f"not rendered: {e}"
    info = _run_info(run)
    status = "finished" if done >= config.iterations else f"iteration {done} of {config.iterations}"
    if done < config.iterations:
        status += " (in progress, or stopped: --resume continues it)"
    header = [
        ("status", status),
        ("backend", config.backend),
        ("model", config.model or "the backend's own (shapes: the embedded Shapes model)"),
        ("scheduler", config.scheduler),
        ("reward", redacted(config.reward)),
        ("training prompts", config.prompts),
        ("held-out prompts", config.eval_prompts or "none"),
        ("steps", str(config.steps)),
        ("guidance", f"{guidance:g}" if guidance is not None else "the backend's default"),
        ("seed", str(config.seed)),
        ("git revision", info.get("git_revision") or "not recorded"),
        ("started", info.get("started") or "not recorded"),
        ("wall time", _wall_time(wall, rows)),
    ]
    held_out, caption = _held_out(config, rows)
    evals = [r for r in rows if any(k.startswith("eval_standard_") for k in r)]
    if not config.eval_specificity:
        missing = "not measured (eval_specificity is off)"
    elif evals and not evals[-1]["iteration"]:
        missing = "not measured for the untrained policy (it gives every prompt standard noise)"
    else:
        missing = "not measured in this held-out pass"
    group_metrics, groups = group_table(evals[-1]) if evals else ([], [])
    plotted = {k for c in curves(config) for k in c.keys} | {"iteration", "reward_std", "time_wall"}
    return RunPage(
        folder=str(run),
        header=header,
        config=_config_rows(config),
        batch=batch_arithmetic(config, guidance),
        plots=curve_plots(rows, curves(config)),
        held_out_plots=held_out_plots(rows),
        held_out=held_out,
        held_out_caption=caption,
        grid=grid,
        grid_caption=grid_caption,
        times=times,
        warnings=warnings,
        notes=[] if rows else ["metrics.jsonl holds no row yet"],
        unplotted=sorted({k for r in rows for k in r if not k.startswith("eval_")} - plotted),
        group_metrics=group_metrics,
        groups=groups,
        control_notes=control_notes(any(r.controls for r in held_out), missing) if held_out else [],
    )


def _run_info(run: Path) -> dict:
    try:
        info = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


# -- an evaluation's page -----------------------------------------------------------------------
@dataclass
class EvalPage:
    folder: str
    header: list[tuple[str, str]]
    rows: list[dict]
    gain: str | None
    grids: list[tuple[int, str]]
    controls: list[dict[str, str]] = field(default_factory=list)
    """Per row of ``rows``: own - other and own - mirror as shown (all {} where neither was measured)."""
    control_notes: list[str] = field(default_factory=list)


def eval_page(folder: Path) -> EvalPage:
    from noiseppo.evaluation.specificity import eval_row_controls, table_controls
    from noiseppo.rewards.base import redacted

    try:
        data = json.loads((folder / "eval.json").read_text())
        rows = data["results"]
        assert isinstance(rows, list)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"{folder / 'eval.json'}: not an eval.json of noiseppo eval (no 'results' list)") from None
    keys = ("policy", "backend", "model", "scheduler", "reward", "prompts", "seeds", "seed", "guidance", "bootstrap")
    shown = {k: "the backend's own" if data[k] is None else str(data[k]) for k in keys if k in data}
    header = [(k, redacted(v) if k == "reward" else v) for k, v in shown.items()]
    gain = folder / "gain.png"
    grids = sorted(
        (int(p.stem[len("grid_steps") :]), data_uri(p.read_bytes()))
        for p in folder.glob("grid_steps*.png")
        if p.stem[len("grid_steps") :].isdigit()
    )
    cells = table_controls([eval_row_controls(r) for r in rows])
    notes = control_notes(any(cells), "not measured in this evaluation")
    uri = data_uri(gain.read_bytes()) if gain.is_file() else None
    return EvalPage(str(folder), header, rows, uri, grids, cells, notes)


# -- a comparison's page -----------------------------------------------------------------------
@dataclass
class ComparePage:
    folder: str
    header: list[tuple[str, str]]
    metric: str
    rows: list[dict]
    plot: str | None


def compare_page(folder: Path) -> ComparePage:
    """The baselines of a ``noiseppo compare`` run: every method's score with its interval and
    its paired difference to standard noise, what it cost, and compare.png."""
    from noiseppo.rewards.base import redacted

    try:
        data = json.loads((folder / "compare.json").read_text())
        metric, rows = data["metric"], data["rows"]
        if not any(r.get("method") == "standard" for r in rows):  # the comparison's baseline, first
            rows = [{**data["standard"], "method": "standard"}, *rows]
        assert isinstance(metric, str) and all(isinstance(r, dict) and metric in r for r in rows)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"{folder / 'compare.json'}: not a compare.json of noiseppo compare") from None
    keys = ("prompts", "seeds", "seed", "steps", "reward", "metric", "pairs")
    header = [(k, redacted(str(data[k])) if k == "reward" else str(data[k])) for k in keys if k in data]
    png = folder / "compare.png"
    return ComparePage(str(folder), header, metric, rows, data_uri(png.read_bytes()) if png.is_file() else None)


# -- the page -------------------------------------------------------------------------------------
def render(folders: Sequence[Path], live: Live | None = None) -> str:
    """The HTML page of ``folders`` (runs and evaluations, in order)."""
    import jinja2

    from noiseppo import __version__

    runs, evals, compares = [], [], []
    for folder in folders:
        kind = folder_kind(folder)
        if kind == "run":
            runs.append(run_page(folder, live))
        elif kind == "eval":
            evals.append(eval_page(folder))
        else:
            compares.append(compare_page(folder))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("report.html.j2").render(
        title=f"noiseppo report: {', '.join(Path(f).name or str(f) for f in folders)}",
        runs=runs,
        evals=evals,
        compares=compares,
        version=__version__,
        built=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def write(folders: Sequence[Path], out: Path, live: Live | None = None) -> Path:
    """Write the page atomically (a temporary file renamed over ``out``): a reader reloading it
    mid-write sees the old page or the new one."""
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: folder of the report does not exist")
    html = render(folders, live)
    try:
        write_atomically(out, html)
    except OSError as e:
        raise UserError(f"{out}: cannot write the report ({e.strerror or e})") from None
    return out


def write_or_warn(folders: Sequence[Path], out: Path, live: Live | None = None) -> bool:
    """``write``, for the commands that write a report beside their real output (train, eval): a
    failed report is one warning line on stderr, never a lost run. Returns whether it was written."""
    try:
        write(folders, out, live)
    except Exception as e:  # noqa: BLE001 -- deliberate: the run matters more than its page
        print(f"noiseppo: warning: {out}: report not written ({e.__class__.__name__}: {e})", file=sys.stderr)
        return False
    return True


class TrainPage:
    """RUN_DIR/report.html kept by a running ``noiseppo train``: the callbacks the CLI gives
    ``noiseppo.training.trainer.train`` (which calls them on rank 0 only). The page is written at a
    checkpoint if the last one is at least ``CHECKPOINT_INTERVAL_S`` old (the run's start counting as
    one), and always at the end; a failed page is a warning line, never a lost run."""

    def on_start(self, out: Path, trainer: Any) -> None:
        self.written = time.monotonic()  # no page yet: the first one waits an interval too

    def on_checkpoint(self, out: Path, trainer: Any) -> None:
        if time.monotonic() - self.written >= CHECKPOINT_INTERVAL_S:
            self._write(out, trainer)
            self.written = time.monotonic()

    def on_end(self, out: Path, trainer: Any) -> str | None:
        if not self._write(out, trainer):
            return None
        return f"report: {out / REPORT} (curves, held-out table, standard against policy images)"

    @staticmethod
    def _write(out: Path, trainer: Any) -> bool:
        """The page of what the run has written so far, with the trainer's backend, policy and reward."""
        live = Live(trainer.backend, trainer.policy, trainer.reward, trainer.iteration)
        return write_or_warn([out], out / REPORT, live)
