"""``noiseppo golden``: the statistics on synthetic matrices, and the command on a tiny setting."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from noiseppo.analysis import golden
from noiseppo.backends import get_backend
from noiseppo.rewards import get_reward
from noiseppo.rewards.scoring import score_with_details
from noiseppo.sampling.seeds import sample_seed, standard_noise
from noiseppo.storage.safe_load import load_tensors

PROMPTS = [
    "a red circle", "a blue square", "two green triangles", "two red squares", "a red circle and a blue square",
    "a green triangle and a yellow circle", "a red circle left of a blue square", "a red square below a green circle",
]  # fmt: skip


def additive(p: int, n: int, r: int, noise_sd: float, residual_sd: float, seed: int = 0):
    """prompt effect + noise effect (+ replicate noise), no interaction; the realised effects."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1.0, p), rng.normal(0, noise_sd, n)
    y = a[:, None, None] + b[None, :, None] + rng.normal(0, residual_sd, (p, n, r))
    return y, a, b


def test_an_additive_matrix_decomposes_exactly_into_its_two_main_effects() -> None:
    y, a, b = additive(30, 20, 1, 0.5, 0.0)
    shares = golden.ss_shares(y)
    total = 20 * ((a - a.mean()) ** 2).sum() + 30 * ((b - b.mean()) ** 2).sum()
    assert shares["noise"] == pytest.approx(30 * ((b - b.mean()) ** 2).sum() / total)
    assert shares["prompt"] == pytest.approx(20 * ((a - a.mean()) ** 2).sum() / total)
    assert shares["interaction"] == pytest.approx(0, abs=1e-12) and shares["residual"] == 0


def test_known_noise_and_prompt_effects_are_recovered_with_replicates() -> None:
    y, a, b = additive(80, 48, 3, 0.5, 0.3, seed=1)
    truth = np.array([b.var(ddof=1), a.var(ddof=1), 0.0, 0.09])
    truth /= truth.sum()
    result = golden.decompose(y, resamples=300)
    for part, share in zip(golden.PARTS, truth, strict=True):
        assert result[part]["share"] == pytest.approx(share, abs=0.02), part
    assert result["noise"]["ci95"][0] < truth[0] < result["noise"]["ci95"][1]
    assert result["interaction"]["ci95"][1] < 0.02
    assert result["replicates"] == 3


def test_without_replicates_there_is_no_residual_and_no_golden_noise_reads_near_zero() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, (60, 1))[:, :1] + rng.normal(0, 1, (60, 40))  # prompt effect + interaction only
    result = golden.decompose(y, resamples=200)
    assert result["residual"] is None
    assert abs(result["noise"]["share"]) < 0.01 and result["noise"]["ci95"][0] < 0 < result["noise"]["ci95"][1]
    # the sums-of-squares share is biased up by (N-1)/(PN-1) of the interaction; the component is not
    assert result["noise"]["ss_share"] > result["noise"]["share"]


def test_mean_pairwise_spearman_and_kendalls_w_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, (7, 9)).astype(float) + np.arange(9) * 0.3  # ties and a shared trend
    result = golden.rank_consistency(y, permutations=100)
    pairs = [stats.spearmanr(y[i], y[j]).statistic for i, j in itertools.combinations(range(7), 2)]
    assert result["spearman"]["value"] == pytest.approx(np.mean(pairs))
    ranks = np.stack([stats.rankdata(row) for row in y])
    ties = sum((c**3 - c).sum() for c in (np.unique(row, return_counts=True)[1] for row in y))
    s = ((ranks.sum(0) - ranks.sum(0).mean()) ** 2).sum()
    assert result["kendall_w"]["value"] == pytest.approx(12 * s / (49 * (9**3 - 9) - 7 * ties))


def test_pure_noise_is_not_significant_and_a_golden_noise_is() -> None:
    rng = np.random.default_rng(4)
    noise = (rng.random((50, 32)) < 0.3).astype(float)
    result = golden.rank_consistency(noise, permutations=500)
    assert result["spearman"]["p"] > 0.05 and result["kendall_w"]["p"] > 0.05
    assert abs(result["spearman"]["value"]) < 0.02
    good = (rng.random((50, 32)) < np.linspace(0.1, 0.6, 32)).astype(float)
    result = golden.rank_consistency(good, permutations=500)
    assert result["spearman"]["p"] < 0.01 and result["kendall_w"]["p"] < 0.01


def test_constant_prompts_are_left_out_of_the_rank_tests() -> None:
    y = np.zeros((5, 6))
    y[0, :2] = y[1, 1:3] = 1
    result = golden.rank_consistency(y, permutations=100)
    assert result["prompts"] == 5 and result["prompts_used"] == 2
    assert golden.rank_consistency(np.zeros((4, 6)), permutations=100)["spearman"] is None


def test_the_transfer_split_is_disjoint_and_seeded() -> None:
    splits = golden.transfer_splits(21, 30, seed=5)
    for choose, evaluate in splits:
        assert len(choose) == 10 and len(evaluate) == 11
        assert set(choose).isdisjoint(evaluate) and set(choose) | set(evaluate) == set(range(21))
    again = golden.transfer_splits(21, 30, seed=5)
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(splits, again, strict=True))
    other = golden.transfer_splits(21, 30, seed=6)
    assert any((a != c).any() for (a, _), (c, _) in zip(splits, other, strict=True))
    assert len({tuple(c) for c, _ in splits}) > 25  # the halves differ from split to split


def test_transfer_finds_golden_noises_and_none_where_there_are_none() -> None:
    rng = np.random.default_rng(6)
    quality = np.linspace(0.1, 0.7, 40)
    good = (rng.random((100, 40)) < quality).astype(float)
    result = golden.transfer(good, k=4, splits=100)
    assert result["gain"]["ci95"][0] > 0.15 and result["worst_gap"]["ci95"][1] < -0.15
    assert result["top"]["mean"] > result["random"]["mean"] > result["worst"]["mean"]
    flat = (rng.random((100, 40)) < 0.4).astype(float)
    result = golden.transfer(flat, k=4, splits=100)
    assert result["gain"]["ci95"][0] < 0 < result["gain"]["ci95"][1]
    with pytest.raises(ValueError, match="k must be"):
        golden.transfer(flat, k=21)


def test_specificity_reports_the_surviving_fraction_of_the_gain() -> None:
    rng = np.random.default_rng(7)
    base = (rng.random((200, 8)) < 0.2).astype(float)
    lift = lambda p: np.maximum(base, rng.random((200, 8)) < p)  # noqa: E731
    scores = {"standard": base, "own": lift(0.4), "same_template": lift(0.2), "generic": base.copy()}
    result = golden.specificity(scores, resamples=2000)
    own = result["kinds"]["own"]["delta"]
    assert own > 0.25 and result["kinds"]["own"]["delta_ci95"][0] > 0.2
    same = result["kinds"]["same_template"]
    assert same["surviving"] == pytest.approx(same["delta"] / own)
    assert 0.3 < same["surviving"] < 0.7 and same["surviving_ci95"][0] < same["surviving"] < same["surviving_ci95"][1]
    assert result["kinds"]["generic"]["surviving"] == 0 and result["pairs"] == 1600


GOLDEN_KEYS = {
    "backend", "model", "scheduler", "reward", "prompts", "n_prompts", "seed", "guidance", "steps", "noises",
    "noise_seeds", "latent_shape", "metrics", "headline_metric", "prompt_list", "templates", "top_k", "splits",
    "bootstrap", "permutations", "files", "results", "policy",
}  # fmt: skip
RESULT_KEYS = {
    "steps",
    "metric",
    "prompts",
    "noises",
    "mean",
    "decomposition",
    "consistency",
    "transfer",
    "transfer_common",
    "best_noises",
}


def check_schema(doc: dict) -> None:
    """golden.json as docs/golden_noise.md documents it."""
    assert set(doc) == GOLDEN_KEYS
    assert len(doc["results"]) == len(doc["steps"]) * len(doc["metrics"])
    for r in doc["results"]:
        assert set(r) == RESULT_KEYS
        assert set(r["decomposition"]) == {*golden.PARTS, "replicates"} and r["decomposition"]["residual"] is None
        for part in ("noise", "prompt", "interaction"):
            share = r["decomposition"][part]
            assert share is None or set(share) == {"share", "ci95", "ss_share"}
        assert set(r["consistency"]) == {"overall", "templates"}
        assert set(r["consistency"]["templates"]) <= {"single", "two", "three", "pair", "relation"}
        for test in (r["consistency"]["overall"], *r["consistency"]["templates"].values()):
            assert {"prompts", "prompts_used", "permutations", "spearman", "kendall_w"} == set(test)
            for stat in (test["spearman"], test["kendall_w"]):
                assert stat is None or (set(stat) == {"value", "null_mean", "null_q95", "p"} and 0 < stat["p"] <= 1)
        t = r["transfer"]
        assert {"k", "splits", "top", "random", "worst", "all", "gain", "worst_gap"} == set(t)
        assert all(set(t[x]) == {"mean", "ci95"} for x in ("top", "random", "worst", "all", "gain", "worst_gap"))
        assert set(r["transfer_common"]) == {"noises", *t} and r["transfer_common"]["noises"] == min(doc["noises"])
        assert len(r["best_noises"]) == doc["top_k"] and all(0 <= j < r["noises"] for j in r["best_noises"])


@pytest.fixture(scope="module")
def tiny_golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """``noiseppo golden`` on 8 prompts x 3 noises at 1 and 2 steps, with the shipped policy."""
    folder = tmp_path_factory.mktemp("golden")
    (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    args = ["golden", "--prompts", str(folder / "prompts.txt"), "--noises", "3,2", "--steps", "1,2", "--top-k", "1",
            "--splits", "20", "--bootstrap", "100", "--permutations", "100", "--policy", "shapes-steps4",
            "--policy-seeds", "1", "--batch", "7", "--out", str(folder / "out")]  # fmt: skip
    return folder, args


def test_golden_runs_through_the_cli_and_writes_what_it_documents(noiseppo, tiny_golden) -> None:
    folder, args = tiny_golden
    done = noiseppo.in_process(*args)
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip().splitlines()
    summary = out[-1]  # one line: per step count, the noise share and the top-k gain, from golden.json
    run = folder / "out"
    assert sorted(p.name for p in run.iterdir()) == [
        "best_noises_steps1.safetensors", "best_noises_steps2.safetensors", "golden.json", "heatmap.png",
        "matrices.safetensors", "steps.png",
    ]  # fmt: skip
    doc = json.loads((run / "golden.json").read_text())
    check_schema(doc)
    assert doc["noises"] == [3, 2] and doc["metrics"] == ["correct", "partial"] and doc["n_prompts"] == 8
    assert doc["templates"] == ["single", "single", "two", "two", "pair", "pair", "relation", "relation"]
    assert doc["noise_seeds"] == [sample_seed(0, 0, j) for j in range(3)]
    assert summary.startswith(f"wrote {run / 'golden.json'} (correct): steps1: noise share "), summary
    for steps in ("steps1", "steps2"):
        result = next(r for r in doc["results"] if f"steps{r['steps']}" == steps and r["metric"] == "correct")
        gain = summary.split(f"{steps}: ")[1].split("top-1 gain ")[1]
        assert gain.startswith(f"{result['transfer']['gain']['mean']:+.3f}"), summary

    # The cached matrices are the scores of real renders: re-render noise 1 for prompt 5 at 1 step.
    matrices = load_tensors(run / "matrices.safetensors")
    assert matrices["partial_steps1"].shape == (8, 3) and matrices["correct_steps2"].shape == (8, 2)
    backend = get_backend("shapes")
    eps = standard_noise(backend.latent_shape, [doc["noise_seeds"][1]])
    image = backend.generate(eps, backend.encode([PROMPTS[5]]), 1, 1.0)
    _, details = score_with_details(get_reward("shapes"), image, [PROMPTS[5]])
    assert details["partial"][0] == pytest.approx(float(matrices["partial_steps1"][5, 1]))

    # The best noises are the standard noises of their seeds, in the latent shape: usable as latents.
    best = load_tensors(run / "best_noises_steps1.safetensors")["latents"]
    top = next(r for r in doc["results"] if r["steps"] == 1 and r["metric"] == "correct")["best_noises"]
    assert torch.equal(best, standard_noise(backend.latent_shape, [doc["noise_seeds"][j] for j in top]))

    # The policy comparison: every kind, paired, the partners of the right templates.
    policy = doc["policy"]
    assert policy["name"] == "shapes-steps4" and policy["steps"] == 4 and policy["seeds"] == 1
    assert set(policy["metrics"]["correct"]["kinds"]) == {
        "standard",
        "own",
        "same_template",
        "other_template",
        "generic",
    }
    for a, b in enumerate(policy["partners"]["same_template"]):
        assert b != a and doc["templates"][b] == doc["templates"][a]
    for a, b in enumerate(policy["partners"]["other_template"]):
        assert doc["templates"][b] != doc["templates"][a]
    assert matrices["policy_own_correct"].shape == (8, 1)

    # --from re-analyses the cached renders without rendering: the same figures.
    analysis = ["--top-k", "1", "--splits", "20", "--bootstrap", "100", "--permutations", "100"]
    assert noiseppo.in_process("golden", *analysis, "--from", run, "--out", folder / "again").returncode == 0
    redo = json.loads((folder / "again" / "golden.json").read_text())
    assert redo["results"] == doc["results"] and redo["policy"] == doc["policy"]


def test_from_merges_the_step_counts_of_several_runs_of_one_experiment(noiseppo, tiny_golden) -> None:
    folder, args = tiny_golden
    if not (folder / "out").exists():
        assert noiseppo.in_process(*args).returncode == 0
    more = ["golden", "--prompts", str(folder / "prompts.txt"), "--noises", "2", "--steps", "3", "--top-k", "1"]
    analysis = ["--top-k", "1", "--splits", "20", "--bootstrap", "100", "--permutations", "100"]
    assert noiseppo.in_process(*more, *analysis[2:], "--out", folder / "steps3").returncode == 0
    merge = ["golden", *analysis, "--from", folder / "steps3", "--from", folder / "out", "--out", folder / "merged"]
    assert noiseppo.in_process(*merge).returncode == 0
    merged = json.loads((folder / "merged" / "golden.json").read_text())
    assert merged["steps"] == [1, 2, 3] and merged["noises"] == [3, 2, 2]
    first = json.loads((folder / "out" / "golden.json").read_text())
    assert merged["results"][:4] == first["results"] and merged["policy"] == first["policy"]
    assert sorted(p.name for p in (folder / "merged").glob("best_noises_*")) == [
        f"best_noises_steps{s}.safetensors" for s in (1, 2, 3)
    ]


def test_golden_header_names_the_settings_and_what_they_resolved_to() -> None:
    from noiseppo.analysis.golden_run import golden_header

    settings = {"backend": "shapes", "model": None, "scheduler": "default", "reward": "shapes", "prompts": "set"}
    prompts = ["a red circle", "two blue squares"]
    matrices = {s: {"partial": np.zeros((2, n)), "correct": np.zeros((2, n))} for s, n in ((1, 3), (4, 2))}
    header = golden_header(settings, prompts, {1: 3, 4: 2}, 5, 1.0, (3, 32, 32), matrices)
    assert header == {
        **settings, "n_prompts": 2, "seed": 5, "guidance": 1.0, "steps": [1, 4], "noises": [3, 2],
        "noise_seeds": [sample_seed(5, 0, j) for j in range(3)], "latent_shape": [3, 32, 32],
        "metrics": ["partial", "correct"], "headline_metric": "correct", "prompt_list": prompts,
        "templates": ["single", "two"],
    }  # fmt: skip
    assert list(header)[:6] == ["backend", "model", "scheduler", "reward", "prompts", "n_prompts"]
    other = golden_header(settings, ["a cat", "a dog"], {2: 2}, 0, 7.5, (4, 8, 8), {2: {"score": np.zeros((2, 2))}})
    assert (other["templates"], other["headline_metric"]) == (None, "score")  # outside the Shapes grammar
