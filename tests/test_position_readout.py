"""The position readout (``readout=position``): its whitening, its dependence on word order, its
round trip through a saved policy, and a two-iteration training run through the command line; and
the binding study's capacity check (experiments/capacity_check.py) on its two reference points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from noiseppo.backends import get_backend
from noiseppo.configs.presets import resolve
from noiseppo.errors import UserError
from noiseppo.policy import NoisePolicy, load_policy
from noiseppo.prompts import load_prompts, mirror_prompt

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
RELATIONS = [p for p in load_prompts("shapes-train") if mirror_prompt(p)]


@pytest.fixture(scope="module")
def backend():
    return get_backend("shapes", None, "ddim")


@pytest.fixture(scope="module")
def fitted(backend) -> NoisePolicy:
    """The policy ``train`` builds with readout=position on the relation prompts, maps made random."""
    policy = NoisePolicy.for_config(
        backend, resolve("shapes", overrides=["readout=position"]), backend.encode(RELATIONS)
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        policy.position_maps.copy_(torch.randn(policy.position_maps.shape, generator=g) * 0.05)
        policy.position_bias.copy_(torch.randn(policy.position_bias.shape, generator=g) * 0.05)
    return policy


def test_whitening_makes_each_positions_token_states_unit_variance_above_the_ridge(backend, fitted) -> None:
    """Per position: zero mean, and a covariance whose eigenvalues are e / (e + ridge x max e) for
    the raw eigenvalues e: 1 in every direction of real spread, less where the ridge dominates."""
    cond = backend.encode(RELATIONS)
    assert fitted.config.tokens == cond.token_states.shape[1] == 9
    x = cond.token_states.double() @ fitted.token_projection.double()
    z = torch.einsum("nlk,lkj->nlj", x - fitted.token_mean.double(), fitted.token_whitening.double())
    for position in range(9):
        raw, rows = x[cond.mask[:, position], position], z[cond.mask[:, position], position]
        assert rows.mean(0).abs().max() < 1e-4
        e = torch.linalg.eigvalsh(torch.cov(raw.T, correction=0)).clamp(min=0)
        expected = e / (e + fitted.config.whitening_ridge * e.max())
        got = torch.linalg.eigvalsh(torch.cov(rows.T, correction=0))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)
        assert got.max() > 0.99


def test_the_position_readout_depends_on_word_order_and_roles(backend, fitted) -> None:
    prompt = "a red circle left of a blue square"
    mean = fitted(backend.encode([prompt, mirror_prompt(prompt), "a blue square left of a red circle"]))[0]
    assert not torch.allclose(mean[0], mean[1]) and not torch.allclose(mean[0], mean[2])


def test_a_saved_position_policy_loads_with_its_statistics(tmp_path: Path, backend, fitted) -> None:
    fitted.save_pretrained(tmp_path / "policy")
    loaded = load_policy(tmp_path / "policy")
    cond = backend.encode(RELATIONS[:5])
    assert torch.equal(loaded(cond)[0], fitted(cond)[0])
    assert torch.equal(loaded.token_whitening, fitted.token_whitening)


def test_the_position_readout_refuses_another_token_count(backend, fitted) -> None:
    cond = backend.encode(RELATIONS[:2])
    cond.token_states, cond.mask = cond.token_states[:, :5], cond.mask[:, :5]
    with pytest.raises(UserError, match="5 token positions, the policy was made for 9"):
        fitted(cond)


def test_two_iterations_of_training_with_the_position_readout(tmp_path: Path, noiseppo, backend) -> None:
    out = tmp_path / "run"
    done = noiseppo.in_process("train", "--preset", "tiny", "readout=position", "iterations=2", "--out", out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "mu_rms" in r] == [1, 2]
    assert rows[-1]["mu_rms"] > 0  # the maps moved
    policy = load_policy(out)
    assert policy.config.readout == "position" and policy.config.tokens == 9
    mean = policy(backend.encode(["a red circle left of a blue square", "a red circle right of a blue square"]))[0]
    assert not torch.equal(mean[0], mean[1])


def capacity(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "capacity_check.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_capacity_check_scores_the_teacher_best_and_a_blind_policy_at_most_half() -> None:
    teacher = capacity("--policy", "teacher")
    # 5 of the 14 held-out object pairs share one colour: their own and mirror teachers are equal.
    assert teacher["binding"] == teacher["binding_best"] == 0.643
    blind = capacity("prompt_blind=true", "--steps", "30", "--curve-every", "30", "--threads", "1")
    assert blind["binding"] <= 0.5  # its one map is as near a mirror teacher as its own
    assert blind["binding_best"] == 0.643


def test_the_capacity_check_takes_searched_means_as_teachers(tmp_path: Path, noiseppo) -> None:
    """``noiseppo search`` output of any backend is a teacher: fitted on one search, tested on another."""
    pairs = {
        "train": ["a red circle left of a blue square", "a green triangle above a yellow circle"],
        "test": ["a blue square left of a green circle"],
    }
    folders = {}
    for split, prompts in pairs.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{p}\n{mirror_prompt(p)}\n" for p in prompts))
        folders[split] = tmp_path / split
        args = ("search", "--prompts", tmp_path / f"{split}.txt", "--budget", "16", "--out", folders[split])
        assert noiseppo.in_process(*args).returncode == 0
    search = ("--teacher", "search", "--train-search", str(folders["train"]), "--test-search", str(folders["test"]))
    teacher = capacity(*search, "--policy", "teacher")
    assert (teacher["train_prompts"], teacher["test_prompts"]) == (4, 2)
    assert teacher["binding"] == teacher["binding_best"] == 1.0  # each searched mean differs from its mirror's
    fit = capacity(*search, "--steps", "20", "--curve-every", "10", "--threads", "1")
    assert [p["step"] for p in fit["curve"]] == [10, 20] and fit["train_r2"] > 0
