"""Statistics of the golden-noise hypothesis on a prompts × noises reward matrix (numpy only).

A reward matrix ``Y`` holds the score of every prompt (rows) rendered from every shared noise
(columns), optionally with replicates along a third axis. Three questions are asked of it:

* ``decompose``: how much of the reward's variance is a noise main effect ("golden" noise that is
  good for every prompt), a prompt main effect, their interaction, and replicate noise;
* ``rank_consistency``: do prompts agree on which noises are good (mean pairwise Spearman,
  Kendall's W), judged against a permutation null that shuffles noise labels within each prompt;
* ``transfer``: do the best noises on half of the prompts stay good on the other half?

``specificity`` compares a policy's own latents with another prompt's (``noiseppo.analysis.golden_run``
renders them). The rendering driver lives in ``noiseppo.analysis.golden_run``; nothing here knows a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PARTS = ("noise", "prompt", "interaction", "residual")


def _as_cells(y: np.ndarray) -> np.ndarray:
    """(P, N) or (P, N, R) → (P, N, R) float64; refuses NaN (a reward that failed)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y[:, :, None]
    if y.ndim != 3 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(f"expected a (prompts >= 2, noises >= 2[, replicates]) matrix, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("the reward matrix holds NaN or infinite values")
    return y


def sums_of_squares(y: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA sums of squares of ``y`` (P, N[, R]); ``residual`` is 0 without replicates."""
    y = _as_cells(y)
    p, n, r = y.shape
    cell = y.mean(2)
    grand = cell.mean()
    prompt = cell.mean(1) - grand
    noise = cell.mean(0) - grand
    inter = cell - grand - prompt[:, None] - noise[None, :]
    return {
        "noise": float(p * r * (noise**2).sum()),
        "prompt": float(n * r * (prompt**2).sum()),
        "interaction": float(r * (inter**2).sum()),
        "residual": float(((y - cell[:, :, None]) ** 2).sum()),
        "total": float(((y - grand) ** 2).sum()),
    }


def variance_components(y: np.ndarray) -> dict[str, float]:
    """Shares of the variance components (random-effects, method of moments), summing to 1.

    A sum-of-squares share overstates a small main effect: with no golden noise at all, the noise
    SS still holds (N-1)/(PN-1) of the interaction. The components subtract that expected part:
    σ²_noise = (MS_noise − MS_int) / (P R), σ²_prompt = (MS_prompt − MS_int) / (N R),
    σ²_int = (MS_int − MS_res) / R, σ²_res = MS_res. Without replicates the interaction holds the
    residual too. The estimates are unbiased, so one can come out slightly below 0 where the true
    component is 0; it is reported as it is, not clipped (clipping would bias a small effect up).
    """
    y = _as_cells(y)
    p, n, r = y.shape
    ss = sums_of_squares(y)
    ms_noise, ms_prompt = ss["noise"] / (n - 1), ss["prompt"] / (p - 1)
    ms_int = ss["interaction"] / ((p - 1) * (n - 1))
    ms_res = ss["residual"] / (p * n * (r - 1)) if r > 1 else 0.0
    parts = {
        "noise": (ms_noise - ms_int) / (p * r),
        "prompt": (ms_prompt - ms_int) / (n * r),
        "interaction": (ms_int - ms_res) / r,
        "residual": ms_res,
    }
    total = sum(parts.values())
    return {k: (v / total if total > 0 else float("nan")) for k, v in parts.items()}


def ss_shares(y: np.ndarray) -> dict[str, float]:
    """Sums of squares as shares of the total (η²), summing to 1."""
    ss = sums_of_squares(y)
    return {k: (ss[k] / ss["total"] if ss["total"] > 0 else float("nan")) for k in PARTS}


def decompose(y: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Variance decomposition of ``y`` with 95% bootstrap intervals.

    The bootstrap resamples the noises (columns) with replacement and keeps the prompts: the
    noises are a sample from N(0, I), while a prompt set such as ``shapes-test`` is the whole
    population asked about. (Resampling prompts too duplicates rows, which inflates the noise
    component: on matrices without any noise effect, its interval then misses 0 most of the
    time.) Returns, per part, the component share, its interval and the plain sum-of-squares
    share: ``{"noise": {"share", "ci95", "ss_share"}, ..., "replicates": R}``; the residual is
    ``None`` without replicates.
    """
    y = _as_cells(y)
    p, n, r = y.shape
    point, eta = variance_components(y), ss_shares(y)
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, len(PARTS)))
    for b in range(resamples):
        shares = variance_components(y[:, rng.integers(0, n, n)])
        boot[b] = [shares[k] for k in PARTS]
    out: dict = {"replicates": r}
    for i, part in enumerate(PARTS):
        if part == "residual" and r == 1:
            out[part] = None
            continue
        valid = boot[:, i][np.isfinite(boot[:, i])]
        ci = np.percentile(valid, [2.5, 97.5]).tolist() if len(valid) else [float("nan")] * 2
        out[part] = {"share": point[part], "ci95": ci, "ss_share": eta[part]}
    return out


def _ranks(row: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), as Spearman's ρ uses them."""
    order = np.argsort(row, kind="stable")
    ranks = np.empty(len(row))
    ranks[order] = np.arange(1, len(row) + 1)
    values, inverse = np.unique(row, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / np.bincount(inverse)[inverse]


def _statistics(ranks: np.ndarray, ties: np.ndarray) -> tuple[float, float]:
    """(mean pairwise Spearman, Kendall's W with the tie correction) of rank rows (m, n)."""
    m, n = ranks.shape
    centred = ranks - ranks.mean(1, keepdims=True)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    total = unit.sum(0)
    spearman = (total @ total - m) / (m * (m - 1))  # the mean of the off-diagonal correlations
    s = ((centred.sum(0)) ** 2).sum()
    w = 12 * s / (m**2 * (n**3 - n) - m * ties.sum())
    return float(spearman), float(w)


def rank_consistency(y: np.ndarray, permutations: int = 1000, seed: int = 0) -> dict:
    """Agreement between prompts on the ranking of the noises, against a permutation null.

    ``y`` is (P, N) (replicates are averaged). A prompt whose row is constant (every noise
    equally good) ranks nothing and is left out; ``prompts_used`` counts the rest. The null
    shuffles the noise labels within each prompt independently; ``p`` is the one-sided
    permutation p-value (1 + #null >= observed) / (1 + permutations). Returns ``None`` values
    where fewer than 2 prompts rank anything.
    """
    y = np.asarray(y, dtype=np.float64)
    y = y.mean(2) if y.ndim == 3 else y
    informative = np.ptp(y, axis=1) > 0
    out: dict = {"prompts": int(len(y)), "prompts_used": int(informative.sum()), "permutations": permutations}
    if informative.sum() < 2:
        return {**out, "spearman": None, "kendall_w": None}
    rows = y[informative]
    ranks = np.stack([_ranks(row) for row in rows])
    ties = np.array([((c := np.unique(row, return_counts=True)[1]) ** 3 - c).sum() for row in rows], np.float64)
    spearman, w = _statistics(ranks, ties)
    rng = np.random.default_rng(seed)
    null = np.empty((permutations, 2))
    for b in range(permutations):
        shuffle = rng.random(ranks.shape).argsort(1)
        null[b] = _statistics(np.take_along_axis(ranks, shuffle, 1), ties)
    p_values = (1 + (null >= np.array([spearman, w]) - 1e-12).sum(0)) / (1 + permutations)
    return {
        **out,
        "spearman": {
            "value": spearman,
            "null_mean": float(null[:, 0].mean()),
            "null_q95": float(np.percentile(null[:, 0], 95)),
            "p": float(p_values[0]),
        },
        "kendall_w": {
            "value": w,
            "null_mean": float(null[:, 1].mean()),
            "null_q95": float(np.percentile(null[:, 1], 95)),
            "p": float(p_values[1]),
        },
    }


def transfer_splits(prompts: int, splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` random halves of ``range(prompts)``: (choose, evaluate) pairs, disjoint, seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        order = rng.permutation(prompts)
        half = prompts // 2
        out.append((np.sort(order[:half]), np.sort(order[half:])))
    return out


def _interval(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "ci95": np.percentile(values, [2.5, 97.5]).tolist()}


def transfer(y: np.ndarray, k: int, splits: int = 200, seed: int = 0) -> dict:
    """Does a golden noise transfer to new prompts? The operational test, in reward units.

    For each random half of the prompts, the k noises with the best mean on the choosing half
    (ties broken by noise index) are scored on the evaluation half, beside k random noises and
    the k worst. ``gain`` is top − the mean of all noises on the evaluation half (what a random
    choice gets in expectation); ``worst_gap`` is worst − that mean. Each figure is the mean over
    splits with the 2.5–97.5 percentiles of its split-to-split distribution.
    """
    y = np.asarray(y, dtype=np.float64)
    y = y.mean(2) if y.ndim == 3 else y
    n = y.shape[1]
    if not 1 <= k <= n // 2:
        raise ValueError(f"k must be in [1, {n // 2}] for {n} noises, got {k}")
    rng = np.random.default_rng(seed + 1)  # the random noises: a stream apart from the splits'
    rows = []
    for choose, evaluate in transfer_splits(len(y), splits, seed):
        order = np.argsort(-y[choose].mean(0), kind="stable")
        held = y[evaluate]
        base = held.mean()
        rows.append(
            [
                held[:, order[:k]].mean(),
                held[:, rng.choice(n, k, replace=False)].mean(),
                held[:, order[-k:]].mean(),
                base,
            ]
        )
    top, random, worst, base = np.array(rows).T
    return {
        "k": k,
        "splits": splits,
        "top": _interval(top),
        "random": _interval(random),
        "worst": _interval(worst),
        "all": _interval(base),
        "gain": _interval(top - base),
        "worst_gap": _interval(worst - base),
    }


def best_noises(y: np.ndarray, k: int) -> list[int]:
    """The k noises with the best mean over all prompts (ties broken by noise index)."""
    y = np.asarray(y, dtype=np.float64)
    y = y.mean(2) if y.ndim == 3 else y
    return [int(i) for i in np.argsort(-y.mean(0), kind="stable")[:k]]


def specificity(scores: dict[str, np.ndarray], resamples: int = 10_000, seed: int = 0) -> dict:
    """How much of a policy's gain survives when its latents come from another prompt.

    ``scores[kind]`` is (P, S): prompt × seed, paired by seed across kinds, with kinds
    ``standard``, ``own`` and any of ``same_template``, ``other_template``, ``generic``. Per kind:
    the mean, the delta to standard, and, for the mismatched kinds, ``surviving`` =
    (kind − standard) / (own − standard), all with 95% cluster-bootstrap intervals (prompts
    resampled with all their seeds).
    """
    standard = np.asarray(scores["standard"], dtype=np.float64)
    p = len(standard)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, p, size=(resamples, p))
    row_means = {kind: np.asarray(v, dtype=np.float64).mean(1) for kind, v in scores.items()}
    boot = {kind: m[picks].mean(1) for kind, m in row_means.items()}
    own_gain, own_boot = row_means["own"].mean() - row_means["standard"].mean(), boot["own"] - boot["standard"]
    out: dict = {"prompts": p, "seeds": int(standard.shape[1]), "pairs": int(standard.size), "kinds": {}}
    for kind, m in row_means.items():
        delta, delta_boot = m.mean() - row_means["standard"].mean(), boot[kind] - boot["standard"]
        row = {
            "mean": float(m.mean()),
            "delta": float(delta),
            "delta_ci95": np.percentile(delta_boot, [2.5, 97.5]).tolist(),
        }
        if kind not in ("standard", "own"):
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = delta_boot / own_boot
            ratio = ratio[np.isfinite(ratio)]
            row["surviving"] = float(delta / own_gain) if own_gain != 0 else None
            row["surviving_ci95"] = np.percentile(ratio, [2.5, 97.5]).tolist() if len(ratio) else None
        out["kinds"][kind] = row
    return out


def group_indices(labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Row indices of each label, in the order labels first appear."""
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return {k: np.array(v) for k, v in groups.items()}
