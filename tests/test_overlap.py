"""Scoring overlapped with rendering (``noiseppo.sampling.overlap``), and each distinct prompt encoded once.

The overlap may change when a reward runs, never what it returns: a run is the same bit for
bit with it on and off, an error from a reward in flight still stops the run with its one
line and a resumable checkpoint, and no scoring thread outlives a call.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from noiseppo.configs.presets import resolve
from noiseppo.errors import UserError
from noiseppo.rewards import REWARDS, get_reward
from noiseppo.sampling.overlap import THREAD_NAME, score_while_rendering
from noiseppo.sampling.render import RenderSpec
from noiseppo.sampling.render_and_score import score_chunks, score_side
from noiseppo.shapes.verifier import verify
from noiseppo.training.trainer import Trainer

MULTI_CHUNK = ["train", "--preset", "tiny", "eval_prompts=", "render_batch=2"]  # 8 images, 4 chunks


def scoring_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


# -- the pipeline itself ---------------------------------------------------------------------------
def test_results_in_order_and_equal_to_the_plain_loop() -> None:
    def batches():
        yield from range(7)

    def score(b: int) -> int:
        return b * b

    assert score_while_rendering(batches(), score) == score_while_rendering(batches(), score, overlap=False)
    assert score_while_rendering(batches(), score) == [b * b for b in range(7)]
    assert not scoring_threads()


def test_score_chunks_gathers_rewards_and_details_in_chunk_order_and_times_each_scoring() -> None:
    class Counting:  # a reward with details: the image's mean and the prompt's length
        def __call__(self, images, prompts):
            return images.flatten(1).mean(1)

        def score_with_details(self, images, prompts):
            return self(images, prompts), {"length": [float(len(p)) for p in prompts]}

    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    prompts = ["a", "bb", "ccc", "dddd", "eeeee"]
    chunks = [(prompts[i : i + 2], images[i : i + 2]) for i in range(0, 5, 2)]  # 3 chunks: 2, 2, 1
    entered = []

    class Timer:
        def __enter__(self):
            entered.append(threading.current_thread().name)

        def __exit__(self, *exc):
            return False

    for overlap in (True, False):
        entered.clear()
        rewards, details = score_chunks(iter(chunks), Counting(), overlap, Timer)
        assert rewards.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert list(details) == ["length"] and details["length"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert details["length"].dtype == np.float64
        assert len(entered) == 3  # once per chunk, on the scoring thread when overlapped
        assert all(name.startswith(THREAD_NAME) for name in entered) == overlap
    rewards, details = score_chunks(iter([]), Counting())
    assert rewards.shape == (0,) and details == {}


def test_the_next_batch_renders_while_the_previous_one_scores() -> None:
    """score(i) waits for batch i+1 to be made: only an overlapped pipeline can finish."""
    made = [threading.Event() for _ in range(5)]

    def batches():
        for i in range(4):
            made[i].set()
            yield i

    def score(i: int) -> int:
        if i < 3 and not made[i + 1].wait(timeout=10):
            raise AssertionError(f"batch {i + 1} was not rendered while batch {i} was scored")
        return i

    assert score_while_rendering(batches(), score) == [0, 1, 2, 3]


def test_at_most_one_batch_waits_behind_the_render() -> None:
    """The queue is bounded: batch i+2 is not made before score(i) has returned."""
    finished: list[int] = []
    violations: list[int] = []

    def batches():
        for i in range(6):
            if i >= 2 and i - 2 not in finished:
                violations.append(i)
            yield i

    def score(i: int) -> int:
        finished.append(i)
        return i

    score_while_rendering(batches(), score)
    assert violations == []


def test_an_error_in_flight_reaches_the_caller_and_no_thread_is_left() -> None:
    scored: list[int] = []

    def score(i: int) -> int:
        if i == 2:
            raise UserError("the reward raised RuntimeError: down")
        scored.append(i)
        return i

    with pytest.raises(UserError, match="down"):
        score_while_rendering(iter(range(10)), score)
    assert not scoring_threads()
    assert scored == [0, 1]  # nothing after the failing batch was scored


def test_ctrl_c_while_a_score_is_in_flight_joins_the_thread() -> None:
    in_flight, scored = threading.Event(), []

    def batches():
        yield 0
        in_flight.wait(timeout=10)
        raise KeyboardInterrupt

    def score(i: int) -> int:
        in_flight.set()
        scored.append(i)
        return i

    with pytest.raises(KeyboardInterrupt):
        score_while_rendering(batches(), score)
    assert not scoring_threads()
    assert scored == [0]  # the score in progress finished: joined, not abandoned


# -- training -------------------------------------------------------------------------------------
def _run(noiseppo, tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, torch.Tensor], list[dict]]:
    out = tmp_path / name
    done = noiseppo.in_process(*MULTI_CHUNK, *extra, "--out", out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return load_file(out / "policy" / "diffusion_pytorch_model.safetensors"), rows


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "samples_per_s"} for r in rows]


def test_a_run_is_the_same_bit_for_bit_with_overlap_on_and_off(noiseppo, tmp_path: Path) -> None:
    on_policy, on_rows = _run(noiseppo, tmp_path, "on")
    off_policy, off_rows = _run(noiseppo, tmp_path, "off", "overlap_scoring=false")
    assert on_policy.keys() == off_policy.keys()
    assert all(torch.equal(on_policy[k], off_policy[k]) for k in on_policy)
    assert untimed(on_rows) == untimed(off_rows)
    assert len(on_rows) == 2 and "train_correct" in on_rows[0]  # the Shapes details came back


def test_a_reward_that_fails_in_flight_stops_the_run_resumably(
    noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    shapes = get_reward("shapes")

    class FailsOnThirdChunk:
        def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("scorer fell over")
            return shapes(images, prompts)

    monkeypatch.setitem(REWARDS, "flaky", (FailsOnThirdChunk, "fails on its third call"))
    out = tmp_path / "run"
    failed = noiseppo.in_process(*MULTI_CHUNK, "--reward", "flaky", "--out", out)
    err = failed.stderr
    assert failed.returncode == 2, err
    assert "Traceback" not in err and err.count("noiseppo: error:") == 1
    last = err.strip().splitlines()[-1]
    assert last == (
        "noiseppo: error: reward 'flaky', training iteration 1: the reward raised RuntimeError: scorer fell over; "
        f"no iteration finished after the checkpoint of iteration 0: `noiseppo train --resume {out}` continues"
    )
    assert not scoring_threads()
    # The failure came in the first iteration: the iteration-0 checkpoint resumes the run.
    monkeypatch.setitem(REWARDS, "flaky", (lambda: shapes, "works again"))
    assert noiseppo.in_process("train", "--resume", out).returncode == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_each_distinct_prompt_is_encoded_once_per_iteration() -> None:
    config = resolve("tiny", overrides=["eval_prompts=", "render_batch=2"])
    trainer = Trainer(config)
    encoded: list[list[str]] = []
    inner = trainer.backend.encode

    def counting(prompts: list[str]):
        encoded.append(list(prompts))
        return inner(prompts)

    trainer.backend.encode = counting  # type: ignore[method-assign]
    trainer.step()
    texts = [p for call in encoded for p in call]
    assert len(texts) == config.prompts_per_iteration  # 2 distinct prompts, not 2 x 4 samples
    assert len(set(texts)) == len(texts)


# -- evaluation and sampling ---------------------------------------------------------------------
def test_held_out_scores_are_the_same_with_overlap_on_and_off() -> None:
    trainer = Trainer(resolve("tiny", overrides=["eval_prompts="]))
    prompts = trainer.prompts[:3]
    on, on_samples = score_side(trainer.backend, trainer.reward, prompts, RenderSpec(2, 1.0, 3, 0, 4, True), None)
    off, off_samples = score_side(trainer.backend, trainer.reward, prompts, RenderSpec(2, 1.0, 3, 0, 4, False), None)
    assert on.keys() == off.keys() == {"reward", "correct", "partial"}
    assert all(np.array_equal(on[k], off[k]) for k in on)
    images = torch.stack([s.image for s in on_samples])
    assert torch.equal(images, torch.stack([s.image for s in off_samples]))
    assert np.array_equal(on["correct"], [v.correct for v in verify(images, [s.prompt for s in on_samples])])


def test_sample_writes_the_same_verdicts_with_overlap_on_and_off(noiseppo, tmp_path: Path) -> None:
    prompts = [
        "--prompt",
        "a red circle",
        "--prompt",
        "a blue square above a green triangle",
        "--prompt",
        "two green circles",
    ]
    args = ["sample", *prompts, "--n", "3", "--steps", "2", "--batch", "2"]  # 9 images, 5 chunks
    assert noiseppo.in_process(*args, "--out", tmp_path / "on").returncode == 0
    assert noiseppo.in_process(*args, "--out", tmp_path / "off", "--no-overlap-scoring").returncode == 0
    on = (tmp_path / "on" / "samples.jsonl").read_text()
    assert on == (tmp_path / "off" / "samples.jsonl").read_text()
    assert len(on.splitlines()) == 9


def test_ctrl_c_during_a_rollout_leaves_no_scoring_thread() -> None:
    trainer = Trainer(resolve("tiny", overrides=["eval_prompts=", "render_batch=2"]))
    inner, calls = trainer.backend.generate, {"n": 0}

    def interrupted_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # chunk 2 is being scored now
            raise KeyboardInterrupt
        return inner(*args, **kwargs)

    trainer.backend.generate = interrupted_on_third_chunk  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.step()
    assert not scoring_threads()
    assert trainer.iteration == 0
