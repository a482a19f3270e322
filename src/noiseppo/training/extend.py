"""Training a run further: ``noiseppo train --resume RUN iterations=N``.

A run's ``config.yaml`` is what ``--resume`` continues, so ``--resume`` takes no other
setting: a new learning rate, reward or prompt set half way would make a run that no config
describes. A larger ``iterations`` is the one exception (users train a bit, look, and train
more). The extension is recorded in ``config.yaml`` (the new count, and a comment line that
names the old one) and in ``metrics.jsonl`` (a row ``{"iteration": K, "event": "extended",
...}`` at the iteration where it happened).

**The learning-rate schedule decides whether an extended run is a longer run.** With
``lr_schedule: constant`` the rate of an iteration does not depend on the total, so a run of
N iterations extended by M is bit for bit a run of N + M from the start (tested). With
``cosine`` (the default preset) the rate of iteration i is a function of i / iterations, so a
finished run of N has decayed to ``lr * lr_final``. The extension recomputes the cosine over
the new total: the added iterations take the rates that a run of N + M takes there, so the
rate rises again from the old schedule's end, and the policy differs from a run of N + M
from the start (whose first N iterations decayed more slowly). The alternatives were worse:
refusing leaves the default preset no way to train on, and continuing at the final rate
trains nothing at the default ``lr_final`` of 0. The notice names the rate the next
iteration takes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.storage.files import write_atomically

RESUME_RULE = "--resume RUN_DIR continues a run with its saved config; of the settings it takes only iterations=N"


class RunFinished(Exception):
    """``--resume`` of a run that has done all its iterations: nothing to do (not a mistake)."""


def resume_iterations(overrides: list[str], flag: int | None, others: list[str]) -> int | None:
    """The new iteration count given with ``--resume`` (``iterations=N`` or ``--iterations N``),
    or None; any other setting (``others``: the other flags given) is refused by name."""
    from noiseppo.configs.presets import config_value

    refused = list(others)
    iterations = None
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "iterations":
            iterations = config_value("iterations", value, "override")
        else:
            refused.append(key.strip() if sep else item)
    if refused:
        raise UserError(f"{RESUME_RULE}, not {', '.join(refused)}")
    iterations = flag if flag is not None else iterations
    if iterations is not None and iterations < 1:
        raise UserError(f"override: 'iterations' must be >= 1, got {iterations}")
    return iterations


def extended(saved: TrainConfig, iterations: int, run: Path) -> TrainConfig:
    """The saved config with ``iterations`` raised; a smaller count is refused."""
    if iterations < saved.iterations:
        raise UserError(
            f"{run}: iterations={iterations} is fewer than the run's {saved.iterations}; a resumed run can "
            "only be extended"
        )
    return dataclasses.replace(saved, iterations=iterations)


def finished_notice(run: Path, done: int) -> str:
    return (
        f"{run}: already finished ({done} of {done} iterations), nothing to do; to train it further: "
        f"noiseppo train --resume {run} iterations=N, with N > {done}"
    )


def extension_notice(run: Path, before: TrainConfig, after: TrainConfig, done: int) -> str:
    """One line: what the extension does, and for a cosine schedule, the rate it resumes at."""
    from noiseppo.configs.schedule import learning_rate

    line = f"{run}: extending from {before.iterations} to {after.iterations} iterations at iteration {done}"
    if after.lr_schedule != "constant":
        new = learning_rate(after, done)
        if done < before.iterations:  # an unfinished run: the old schedule's rate for that iteration
            old = f"the old schedule's {learning_rate(before, done):.3g}"
        else:
            old = f"the old schedule ended at {learning_rate(before, before.iterations - 1):.3g}"
        line += (
            f"; the {after.lr_schedule} learning rate now spans {after.iterations} iterations: iteration "
            f"{done + 1} takes {new:.3g} ({old}), so the result is not that of a "
            f"{after.iterations}-iteration run from the start (docs/noise_ppo.md, 'Training a run further')"
        )
    return line


def record_extension(run: Path, before: TrainConfig, after: TrainConfig, done: int, config_yaml: str) -> None:
    """Write the extended ``config.yaml`` (atomically; earlier comment lines kept) and the
    ``metrics.jsonl`` row that marks the extension."""
    from noiseppo.configs.schedule import learning_rate

    path = run / "config.yaml"
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    comments.append(f"# extended from {before.iterations} to {after.iterations} iterations at iteration {done}")
    write_atomically(path, "\n".join(comments) + "\n" + config_yaml)
    row = {
        "iteration": done,
        "event": "extended",
        "iterations_before": before.iterations,
        "iterations": after.iterations,
        "lr_next": learning_rate(after, done),
    }
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")
