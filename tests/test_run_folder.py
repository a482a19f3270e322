"""``noiseppo.storage.run_folder``, the run folder every trainer shares, on real files."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import noiseppo.storage.files as files
from noiseppo.errors import UserError
from noiseppo.storage.checkpoint import latest_step, load_state, save_state
from noiseppo.storage.files import write_atomically
from noiseppo.storage.interrupt import Interrupted
from noiseppo.storage.run_folder import RunFolder, checkpoint_due


def folder(path: Path) -> RunFolder:
    return RunFolder(path, "config.json", f"noiseppo x --resume {path}")


def test_a_new_run_refuses_a_taken_folder_and_one_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    folder(tmp_path / "empty").refuse_taken("taken")  # an empty folder is free
    folder(tmp_path / "new" / "runs" / "run").refuse_taken("taken")  # missing parents are made later
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"full: taken$"):
        folder(tmp_path / "full").refuse_taken("taken")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="is a file, not a folder"):
        folder(tmp_path / "a-file").refuse_taken("taken")
    with pytest.raises(UserError, match="a-file: is a file, so the output .* cannot be made below it"):
        folder(tmp_path / "a-file" / "run").refuse_taken("taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "empty", "full"]  # nothing written


def test_a_resume_needs_the_settings_and_a_checkpoint(tmp_path: Path) -> None:
    run = folder(tmp_path / "run")
    with pytest.raises(UserError, match=r"run: not a run$"):
        run.refuse_unresumable("not a run")
    run.write_config('{"lr": 0.1}')
    assert run.read_json_config() == {"lr": 0.1} and [p.name for p in run.path.iterdir()] == ["config.json"]
    run.refuse_unresumable("not a run", checkpoint=False)
    with pytest.raises(UserError, match="not a run"):
        run.refuse_unresumable("not a run")
    save_state(run.checkpoints, {"w": torch.zeros(1)}, {"iteration": 0}, 0)
    run.refuse_unresumable("not a run")


def test_rows_are_json_with_null_for_non_finite_values(tmp_path: Path) -> None:
    run = folder(tmp_path)
    written = run.append({"iteration": 1, "loss": float("nan"), "kl": float("inf"), "reward": 0.5, "event": "x"})
    assert written == {"iteration": 1, "loss": None, "kl": None, "reward": 0.5, "event": "x"}
    run.append({"iteration": 2, "loss": -float("inf")})
    lines = run.metrics.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [written, {"iteration": 2, "loss": None}]
    assert "NaN" not in run.metrics.read_text() and "Infinity" not in run.metrics.read_text()


def test_a_full_disk_is_one_line_that_says_how_to_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = folder(tmp_path)

    def full(self: Path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(UserError) as error:
        run.append({"iteration": 1})
    assert str(error.value) == (
        f"{tmp_path / 'metrics.jsonl'}: cannot write (No space left on device); resume once there is room"
    )


def test_a_resume_drops_the_rows_after_the_checkpoint_and_goes_on_with_the_wall_clock(tmp_path: Path) -> None:
    run = folder(tmp_path)
    rows = [{"iteration": i, "time_wall": 10.0 * i} for i in (1, 2, 3)]
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 4, "ti')  # cut short
    run.resumed_at("iteration", 2)
    assert [json.loads(line) for line in run.metrics.read_text().splitlines()] == rows[:2]
    assert run.clock.before == 20.0 and 20.0 <= run.clock() < 30.0
    fresh = folder(tmp_path / "new")
    fresh.resumed_at("iteration", 0)  # no metrics yet: nothing to drop, the clock from 0
    assert fresh.clock.before == 0.0 and not fresh.metrics.exists()
    steps = RunFolder(tmp_path / "steps", "config.json", "", clock_key="elapsed_s")
    steps.path.mkdir()
    steps.metrics.write_text('{"step": 1, "elapsed_s": 3.5}\n{"step": 2, "elapsed_s": 7.0}\n')
    steps.resumed_at("step", 1)
    assert steps.clock.before == 3.5


def test_checkpoints_are_due_every_few_iterations_and_at_the_last() -> None:
    assert [done for done in range(1, 8) if checkpoint_due(done, 3, 7)] == [3, 6, 7]
    assert [done for done in range(1, 4) if checkpoint_due(done, 1, 3)] == [1, 2, 3]


class Counter:
    """The smallest trainer ``RunFolder.iteration`` guards: a weight, an optimizer, an iteration."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.model.weight)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1.0)
        self.iteration, self.saved_at, self.saves = 0, None, 0

    def step(self) -> None:
        self.optimizer.zero_grad()
        (-self.model.weight.sum()).backward()  # the weight grows by 1 per step
        self.optimizer.step()
        self.iteration += 1

    def save(self, run: Path) -> None:
        save_state(run / "checkpoint", {"w": self.model.weight.detach()}, {"iteration": self.iteration}, self.iteration)
        self.saved_at, self.saves = self.iteration, self.saves + 1

    def weight(self) -> float:
        return float(self.model.weight.detach())


def test_ctrl_c_in_an_iteration_checkpoints_the_last_finished_one(tmp_path: Path) -> None:
    run, trainer = folder(tmp_path), Counter()
    for _ in range(2):
        with run.iteration(trainer, 5, model=trainer.model) as finished:
            trainer.step()
            finished()
    with pytest.raises(Interrupted) as error, run.iteration(trainer, 5, model=trainer.model):
        trainer.step()  # updated, not logged: undone
        raise KeyboardInterrupt
    assert str(error.value) == (
        f"interrupted at iteration 2 of 5 (checkpoint saved); `noiseppo x --resume {tmp_path}` continues"
    )
    assert (trainer.iteration, trainer.weight()) == (2, 2.0)
    tensors, meta = load_state(tmp_path / "checkpoint")
    assert meta["iteration"] == 2 and float(tensors["w"]) == 2.0
    with pytest.raises(Interrupted, match="at iteration 3 of 5"), run.iteration(trainer, 5, model=trainer.model) as f:
        trainer.step()
        f()  # finished: a Ctrl-C after it (a progress bar) keeps it
        raise KeyboardInterrupt
    assert (trainer.iteration, trainer.weight(), latest_step(tmp_path / "checkpoint")) == (3, 3.0, 3)


def test_a_failure_in_an_iteration_keeps_the_last_finished_one_and_says_so(tmp_path: Path) -> None:
    run, trainer = folder(tmp_path), Counter()
    trainer.save(tmp_path)  # iteration 0, as a new run's first checkpoint
    with pytest.raises(UserError) as error, run.iteration(trainer, 5, model=trainer.model):
        trainer.step()
        raise UserError("reward 'x': broke")
    assert str(error.value) == (
        "reward 'x': broke; no iteration finished after the checkpoint of iteration 0: "
        f"`noiseppo x --resume {tmp_path}` continues"
    )
    assert trainer.saves == 1 and (trainer.iteration, trainer.weight()) == (0, 0.0)  # not written again
    with run.iteration(trainer, 5, model=trainer.model) as finished:
        trainer.step()
        finished()
    with pytest.raises(UserError, match="broke; checkpoint of iteration 1 saved: `noiseppo x"):
        with run.iteration(trainer, 5, model=trainer.model):
            trainer.step()
            raise UserError("broke")
    assert trainer.saves == 2 and load_state(tmp_path / "checkpoint")[1]["iteration"] == 1
    # A process that does not write the run (rank 1 of 2): undone, nothing saved, the error as it came.
    with pytest.raises(UserError, match=r"^broke$"), run.iteration(trainer, 5, writes=False, model=trainer.model):
        trainer.step()
        raise UserError("broke")
    assert trainer.saves == 2 and (trainer.iteration, trainer.weight()) == (1, 1.0)


def test_a_file_written_atomically_is_the_old_one_or_the_new_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "config.json"
    write_atomically(path, "old\n")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"  # the old file whole, and no temporary file left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    monkeypatch.undo()
    write_atomically(path, "new\n")
    assert path.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
