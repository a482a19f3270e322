"""``noiseppo eval``, ``sample --policy`` and ``list`` on a policy with a known, non-zero head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from noiseppo.evaluation.paired import paired_bootstrap
from noiseppo.policy import NoisePolicy

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow square"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder as ``noiseppo train`` leaves it, with a hand-set policy."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    policy = NoisePolicy(latent_shape=(3, 32, 32), readout="shared")  # one bias for every cell
    with torch.no_grad():
        policy.head.bias.copy_(torch.tensor([0.4, -0.2, 0.1]))
    policy.save_pretrained(folder / "policy")
    (folder / "config.yaml").write_text(yaml.safe_dump({"backend": "shapes", "steps": 2, "reward": "shapes"}))
    return folder


def test_eval_writes_the_documented_eval_json(noiseppo, run: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "eval"
    result = noiseppo(
        "eval",
        "--policy",
        run,
        "--prompts",
        prompts,
        "--steps",
        "2,4",
        "--seeds",
        "2",
        "--bootstrap",
        "200",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    names = ["eval.json", "gain.png", "grid_steps2.png", "grid_steps4.png", "report.html"]
    assert sorted(p.name for p in out.iterdir()) == names
    report = json.loads((out / "eval.json").read_text())
    assert report["seeds"] == 2 and report["reward"] == "shapes" and report["guidance"] == 1.0
    rows = report["results"]
    assert [(r["steps"], r["metric"]) for r in rows] == [
        (s, m) for s in (2, 4) for m in ("reward", "correct", "partial")
    ]
    keys = {"steps", "metric", "n", "standard", "policy", "delta", "ci95_low", "ci95_high"}
    keys |= {"policy_mu", "delta_mu", "ci95_mu_low", "ci95_mu_high"}
    # The prompt-specificity controls (noiseppo.evaluation.specificity): another prompt's latents for all three
    # prompts; the mirrored relation's for the one relation prompt.
    keys |= {f"{k}{side}{end}" for side in ("other", "mirror") for k, end in (("own_minus_", ""), ("", "_pairs"),
             ("ci95_", "_low"), ("ci95_", "_high"))}  # fmt: skip
    for r in rows:
        assert set(r) == keys
        assert r["n"] == 6 and r["other_pairs"] == 6 and r["mirror_pairs"] == 2
    # Each side recomputed here, through the public API, from the documented seed rule (sample j of
    # prompt i: sample_seed(0, i, j)): a wrong seed, side, step count or metric changes these numbers.
    from noiseppo.backends import get_backend
    from noiseppo.policy import load_policy
    from noiseppo.rewards import get_reward
    from noiseppo.sampling.seeds import sample_seed, standard_noise

    backend, policy, shapes = get_backend("shapes"), load_policy(str(run)), get_reward("shapes")
    texts = [p for p in PROMPTS for _ in range(2)]
    seeds = [sample_seed(0, i, j) for i in range(len(PROMPTS)) for j in range(2)]
    by_key = {(r["steps"], r["metric"]): r for r in rows}
    for steps in (2, 4):
        with torch.no_grad():
            cond = backend.encode(texts)
            standard = torch.as_tensor(
                shapes(backend.generate(standard_noise((3, 32, 32), seeds), cond, steps, 1.0), texts)
            ).numpy()
            z = policy.backend_latents(backend, texts, seeds=seeds, mode="mean")
            mean = torch.as_tensor(shapes(backend.generate(z, cond, steps, 1.0), texts)).numpy()
        r = by_key[(steps, "partial")]
        assert r["standard"] == pytest.approx(standard.mean()) and r["policy_mu"] == pytest.approx(mean.mean())
        assert r["delta_mu"] == pytest.approx((mean - standard).mean())
        assert by_key[(steps, "reward")]["standard"] == r["standard"]  # the Shapes reward is the partial score
    assert (
        by_key[(4, "partial")]["standard"] > 0
        and by_key[(4, "partial")]["policy"] != by_key[(4, "partial")]["standard"]
    )
    assert "steps metric" in result.stdout and "partial" in result.stdout
    with Image.open(out / "grid_steps4.png") as grid:
        assert grid.width > 200
    with Image.open(out / "gain.png") as plot:
        assert plot.format == "PNG"


def test_sample_with_a_policy_pairs_with_the_plain_command(noiseppo, run: Path, tmp_path: Path) -> None:
    common = ["--prompt", PROMPTS[0], "--n", "2", "--seed", "3"]
    results = noiseppo.many(
        {
            "plain": ["sample", *common, "--steps", "2", "--out", tmp_path / "plain"],
            "policy": ["sample", *common, "--policy", run, "--out", tmp_path / "policy"],
        }
    )
    assert all(r.returncode == 0 for r in results.values()), [r.stderr for r in results.values()]
    plain = [json.loads(line) for line in (tmp_path / "plain" / "samples.jsonl").read_text().splitlines()]
    learned = [json.loads(line) for line in (tmp_path / "policy" / "samples.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in plain] == [r["seed"] for r in learned]
    assert learned[0]["steps"] == 2, "the policy's training steps are the default"
    assert learned[0]["policy"] == str(run) and learned[0]["policy_mode"] == "sample"
    a = np.asarray(Image.open(tmp_path / "plain" / plain[0]["file"]))
    b = np.asarray(Image.open(tmp_path / "policy" / learned[0]["file"]))
    assert a.shape == b.shape and not np.array_equal(a, b), "the shifted mean must change the image"


def test_list_presets_and_policies(noiseppo) -> None:
    results = noiseppo.many({w: ["list", w] for w in ("presets", "policies", "rewards", "backends", "prompts")})
    assert all(r.returncode == 0 for r in results.values())
    presets = dict(line.split(None, 1) for line in results["presets"].stdout.splitlines())
    assert {"shapes", "tiny"} <= set(presets) and "4 steps" in presets["shapes"]
    assert "shapes-steps4" in results["policies"].stdout


def test_cluster_bootstrap() -> None:
    rng = np.random.default_rng(0)
    delta = rng.normal(0.2, 1.0, size=4000)
    clusters = np.repeat(np.arange(500), 8)
    low, high = paired_bootstrap(delta, clusters, resamples=2000)
    assert low < delta.mean() < high and high - low < 0.15
    # All-equal differences: a zero-width interval at that value.
    assert paired_bootstrap(np.full(10, 0.5), np.arange(10), resamples=100) == (0.5, 0.5)
    # Correlated samples within a prompt widen the interval compared with treating them as independent.
    shared = np.repeat(rng.normal(0, 1, 500), 8) + rng.normal(0, 0.1, 4000)
    clustered = paired_bootstrap(shared, clusters, resamples=2000)
    independent = paired_bootstrap(shared, np.arange(4000), resamples=2000)
    assert clustered[1] - clustered[0] > 2 * (independent[1] - independent[0])


def test_sample_rows_blocks_and_files_of_noiseppo_sample(tmp_path: Path) -> None:
    from noiseppo.evaluation.samples import sample_blocks, sample_rows, samples_title, write_samples
    from noiseppo.sampling.render import Sample

    image = torch.zeros(3, 8, 8)
    samples = [Sample(p, j, ["a red circle", "two blue squares"][p], 10 * p + j, image) for p in (0, 1) for j in (0, 1)]
    verdicts = {"correct": np.array([1.0, 0.0, 0.0, 1.0]), "partial": np.array([1.0, 0.123456, 0.5, 1.0])}
    settings = {"steps": 2, "guidance": 1.0, "policy": "shapes-steps2", "policy_mode": "mean"}
    rows = sample_rows(samples, settings, verdicts)
    assert rows[1] == {
        "file": "images/0001.png", "prompt": "a red circle", "seed": 1, "steps": 2, "guidance": 1.0,
        "policy": "shapes-steps2", "policy_mode": "mean", "correct": False, "partial": 0.1235,
    }  # fmt: skip
    assert list(rows[1]) == [
        "file",
        "prompt",
        "seed",
        "steps",
        "guidance",
        "policy",
        "policy_mode",
        "correct",
        "partial",
    ]
    assert sample_rows(samples[:1], {"steps": 4, "guidance": 1.0}, None) == [
        {"file": "images/0000.png", "prompt": "a red circle", "seed": 0, "steps": 4, "guidance": 1.0}
    ]
    blocks = sample_blocks(samples, [Image.new("RGB", (8, 8))] * 4, verdicts)
    assert [(b.prompt, [c.label for c in b.cells]) for b in blocks] == [
        ("a red circle", ["sample 0", "sample 1"]),
        ("two blue squares", ["sample 0", "sample 1"]),
    ]
    assert (blocks[0].cells[1].correct, blocks[0].cells[1].score) == (False, pytest.approx(0.123456))
    assert sample_blocks(samples[:1], [Image.new("RGB", (8, 8))], None)[0].cells[0].correct is None
    assert samples_title(settings, 3) == "policy shapes-steps2 (mean), 2 steps, guidance 1, seed 3"
    assert (
        samples_title({"steps": 4, "guidance": 7.5}, 0) == "standard noise (no policy), 4 steps, guidance 7.5, seed 0"
    )

    assert write_samples(tmp_path, samples, settings, 3, verdicts) == "grid.png"
    assert [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()] == rows
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"{k:04d}.png" for k in range(4)]
    with Image.open(tmp_path / "images" / "0003.png") as png, Image.open(tmp_path / "grid.png") as grid:
        assert png.size == (8, 8) and grid.width > 8
