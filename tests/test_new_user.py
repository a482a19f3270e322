"""What a new user trips over (issue 19), through the real CLI: Ctrl-C, "did you mean",
training a run further, the Python API on the Shapes model, the mismatch warning, the resolved
guidance in config.yaml, a fast start-up, and the help texts."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from noiseppo.backends.shapes import DEFAULT_MODEL
from noiseppo.evaluation.evaluate import format_table
from noiseppo.names import closest, natural_key
from noiseppo.policy import latents_for_seeds, load_policy
from noiseppo.sampling.seeds import standard_noise
from noiseppo.storage.checkpoint import latest_step, load_state

README = Path(__file__).parents[1] / "README.md"
TINY = ["train", "--preset", "tiny", "eval_prompts=", "threads=1"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # lines reach the file at once


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupted(
    command: list[str], ready: Callable[[], bool], folder: Path, started: list | None = None
) -> subprocess.CompletedProcess[str]:
    """Start ``command``, wait until ``ready()`` shows that it has started its work, send SIGINT
    (what Ctrl-C sends) and wait for it to end. Output goes to files: a pipe could fill up. The
    process is appended to ``started``, for a ``ready`` that looks at it."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        # A shell's background job starts with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
        proc = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, text=True, env=ONE_THREAD, preexec_fn=_default_sigint
        )
        if started is not None:
            started.append(proc)
        deadline = time.monotonic() + 180
        while not ready():
            assert proc.poll() is None, f"ended before it was interrupted: {err.read_text()}"
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
    return subprocess.CompletedProcess(command, proc.returncode, out.read_text(), err.read_text())


def the_one_line(stderr: str) -> str:
    """stderr holds one line besides the progress bar (which redraws with carriage returns)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("noise ppo", "steps "))]
    assert len(lines) == 1, stderr
    return lines[0]


def kept_at(result: subprocess.CompletedProcess[str], pattern: str, folder: Path) -> int:
    """Exit status 130 and one line matching ``pattern``, whose groups are the count of finished
    iterations (or steps) and the run folder; returns that count."""
    assert result.returncode == 130, result.stderr
    line = the_one_line(result.stderr)
    match = re.fullmatch(pattern, line)
    assert match and match[2] == str(folder), line
    return int(match[1])


def rows(run: Path) -> list[dict]:
    """The rows of ``run``'s metrics.jsonl (train's and train-base's)."""
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def logged(run: Path, n: int) -> Callable[[], bool]:
    """Whether ``run`` has logged ``n`` rows: complete lines only, a row may be half written."""
    path = run / "metrics.jsonl"
    return lambda: path.exists() and path.read_text().count("\n") >= n


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_in_train_checkpoints_the_last_finished_iteration_and_resume_continues_exactly(
    noiseppo, tmp_path: Path
) -> None:
    args = [*TINY, "iterations=12"]
    reference = subprocess.Popen(
        noiseppo.command(*args, "--out", tmp_path / "reference"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=ONE_THREAD,
    )  # fmt: skip
    run = tmp_path / "run"
    result = interrupted(noiseppo.command(*args, "--out", run), logged(run, 2), tmp_path)

    pattern = r"noiseppo: interrupted at iteration (\d+) of 12 \(checkpoint saved\); `noiseppo train --resume (.+)` "
    done = kept_at(result, pattern + "continues", run)
    assert 1 <= done < 12  # with 2 rows logged, iteration 1 at least had finished (2 may have been mid-checkpoint)
    assert latest_step(run / "checkpoint") == done and load_state(run / "checkpoint")[1]["iteration"] == done

    resumed = noiseppo("train", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    assert f"policy written to {run / 'policy'}" in resumed.stdout
    assert reference.wait(timeout=300) == 0
    a, b = load_state(run / "checkpoint")[0], load_state(tmp_path / "reference" / "checkpoint")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the interrupted run differs"
    assert [r["reward_mean"] for r in rows(run)] == [r["reward_mean"] for r in rows(tmp_path / "reference")]


def test_ctrl_c_in_sample_and_eval_leaves_nothing(noiseppo, tmp_path: Path) -> None:
    def started(out: Path) -> Callable[[], bool]:  # new_output_dir's temporary folder exists
        return lambda: any(p.name.startswith(f".{out.name}.partial-") for p in tmp_path.iterdir())

    commands = {
        "sample": ["sample", "--prompts", "shapes-test", "--n", "8", "--steps", "50", "--batch", "8"],
        "eval": ["eval", "--policy", "shapes-steps4", "--seeds", "8", "--batch", "8"],
    }
    outs = {name: tmp_path / f"{name}-out" for name in commands}
    for name in commands:
        (tmp_path / name).mkdir()  # each command's stdout and stderr

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return interrupted(noiseppo.command(*commands[name], "--out", outs[name]), started(outs[name]), tmp_path / name)

    with ThreadPoolExecutor(2) as pool:  # both at once: each start-up imports torch
        results = dict(zip(commands, pool.map(run, commands), strict=True))
    for name, result in results.items():
        out = outs[name]
        assert result.returncode == 130, result.stderr
        assert the_one_line(result.stderr) == f"noiseppo: interrupted; nothing written to {out}"
        assert not out.exists()
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary folder was left"


def test_ctrl_c_in_train_base_finishes_the_step_checkpoints_it_and_resume_continues(noiseppo, tmp_path: Path) -> None:
    out = tmp_path / "base"
    tiny = ["--optimizer-steps", "100000", "--batch", "4", "--dim", "32", "--depth", "1", "--text-dim", "16"]
    tiny += ["--warmup", "2"]
    tiny += ["--checkpoint-every", "100000", "--eval-every", "100000", "--threads", "1"]
    command = noiseppo.command("shapes", "train-base", "--out", out, *tiny)
    result = interrupted(command, logged(out, 3), tmp_path)

    pattern = r"noiseppo: interrupted at step (\d+) of 100000 \(checkpoint saved\); `noiseppo shapes train-base "
    done = kept_at(result, pattern + r"--out (.+) --resume` continues", out)
    assert latest_step(out / "checkpoint") == done == len(rows(out)), "the checkpoint is the last logged step"
    assert [r["step"] for r in rows(out)] == list(range(1, done + 1))

    again = interrupted(
        [*noiseppo.command("shapes", "train-base", "--out", out, "--resume")],
        logged(out, done + 1),  # a step past the checkpoint
        tmp_path,
    )
    assert again.returncode == 130 and f"resumed at step {done}\n" in again.stdout, again.stderr
    assert latest_step(out / "checkpoint") > done
    assert [r["step"] for r in rows(out)] == list(range(1, latest_step(out / "checkpoint") + 1))


# -- did you mean (through the CLI: the mistyped rows of docs/hostile_inputs.md) -------------------


def test_no_suggestion_for_a_name_near_nothing() -> None:
    assert closest("sdxl-turbo", ["shapes", "diffusers", "sd3", "flux"]) is None
    assert closest("tinny", ["shapes", "tiny"]) == "tiny"


# -- training a run further -----------------------------------------------------------------------


def test_extending_a_constant_lr_run_is_bit_for_bit_the_longer_run(noiseppo, tmp_path: Path) -> None:
    assert noiseppo.in_process(*TINY, "iterations=3", "--out", tmp_path / "three").returncode == 0
    assert noiseppo.in_process(*TINY, "--out", tmp_path / "two").returncode == 0  # the preset's 2 iterations

    extended = noiseppo.in_process("train", "--resume", tmp_path / "two", "iterations=3")
    assert extended.returncode == 0, extended.stderr
    printed = extended.stdout
    assert f"{tmp_path / 'two'}: extending from 2 to 3 iterations at iteration 2\n" in printed

    weights = "policy/diffusion_pytorch_model.safetensors"
    extended, longer = load_file(tmp_path / "two" / weights), load_file(tmp_path / "three" / weights)
    assert all(torch.equal(extended[k], longer[k]) for k in longer), "extending 2 by 1 must equal 3 from the start"
    a, b = load_state(tmp_path / "two" / "checkpoint")[0], load_state(tmp_path / "three" / "checkpoint")[0]
    assert all(torch.equal(a[k], b[k]) for k in b), "and so must the optimizer state"

    config = (tmp_path / "two" / "config.yaml").read_text()
    assert "iterations: 3\n" in config and "# extended from 2 to 3 iterations at iteration 2\n" in config
    event = [r for r in rows(tmp_path / "two") if r.get("event") == "extended"]
    assert event == [{"iteration": 2, "event": "extended", "iterations_before": 2, "iterations": 3, "lr_next": 1e-3}]
    assert [r["reward_mean"] for r in rows(tmp_path / "two") if "reward_mean" in r] == [
        r["reward_mean"] for r in rows(tmp_path / "three")
    ]

    # Finished now: --resume says so in one line and loads nothing.
    finished = noiseppo.in_process("train", "--resume", tmp_path / "two")
    assert finished.returncode == 0, finished.stderr
    out = finished.stdout
    assert out == (
        f"{tmp_path / 'two'}: already finished (3 of 3 iterations), nothing to do; to train it further: "
        f"noiseppo train --resume {tmp_path / 'two'} iterations=N, with N > 3\n"
    )


def test_extending_a_cosine_run_recomputes_the_schedule_and_says_so(noiseppo, tmp_path: Path) -> None:
    run = tmp_path / "cosine"
    assert noiseppo.in_process(*TINY, "lr_schedule=cosine", "lr_final=0.1", "--out", run).returncode == 0
    extended = noiseppo.in_process("train", "--resume", run, "--iterations", "6")
    assert extended.returncode == 0, extended.stderr
    line = extended.stdout.splitlines()[0]
    # lr(i) = lr * (f + (1 - f) * (1 + cos(pi * i / iterations)) / 2), lr 1e-3, f = lr_final 0.1: the 2-iteration
    # schedule ended at lr(1 of 2) = 5.5e-4; over 6 iterations, iteration index 2 takes lr(2 of 6) = 7.75e-4.
    assert line.startswith(f"{run}: extending from 2 to 6 iterations at iteration 2; the cosine learning rate")
    assert "now spans 6 iterations: iteration 3 takes 0.000775 (the old schedule ended at 0.00055)" in line
    lrs = [r["lr"] for r in rows(run) if "lr" in r]
    cosine = [1e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi * i / 6))) for i in range(2, 6)]
    assert lrs == pytest.approx([1e-3, 5.5e-4, *cosine])


# -- the Python API on the Shapes model -----------------------------------------------------------


def readme_block(section: str) -> str:
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", text, re.S)[1]


def test_the_readme_python_example_runs_offline_and_gives_the_policys_images(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_block("Python API"), "README.md", "exec"), namespace)  # the block as a reader runs it

    backend, policy, prompts = namespace["backend"], namespace["policy"], namespace["prompts"]
    assert backend.name == "shapes"
    expected = latents_for_seeds(policy, backend, prompts, [0, 1])
    assert torch.equal(namespace["latents"], expected)
    assert not torch.equal(expected, standard_noise(backend.latent_shape, [0, 1])), "a trained policy moves ε"
    images = namespace["images"]
    assert images.shape == (len(prompts), 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    printed = capsys.readouterr().out
    from noiseppo.shapes.verifier import verify

    partial = torch.tensor([float(v.partial) for v in verify(images, prompts)], dtype=torch.float32)
    assert printed.strip() == str(partial), printed
    assert (tmp_path / "policy.png").is_file()


def test_backend_latents_matches_latents_for_seeds_and_refuses_both_noise_sources() -> None:
    from noiseppo.backends import get_backend
    from noiseppo.errors import UserError

    backend, policy = get_backend("shapes"), load_policy("shapes-steps2")
    prompts = ["a red circle", "two blue squares"]
    assert torch.equal(
        policy.backend_latents(backend, prompts, seeds=[3, 4]), latents_for_seeds(policy, backend, prompts, [3, 4])
    )
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    eps = torch.randn(2, *backend.latent_shape, generator=g2)
    assert torch.equal(
        policy.backend_latents(backend, prompts, generator=g1), policy.noise_to_latents()(backend.encode(prompts), eps)
    )
    with pytest.raises(UserError, match="give a generator or seeds, not both"):
        policy.backend_latents(backend, prompts, generator=g1, seeds=[0, 1])
    # Each call takes one kind of model and says which call takes the other.
    with pytest.raises(UserError, match="^latents_for takes a diffusers pipeline, got a ShapesBackend; for a noiseppo"):
        policy.latents_for(backend, prompts)


# -- warnings and config.yaml ---------------------------------------------------------------------


def test_sample_warns_when_the_sampler_differs_from_the_policys_training(noiseppo, tmp_path) -> None:
    base = ["sample", "--policy", "shapes-steps2", "--prompt", "a red circle", "--n", "1"]
    same = noiseppo.in_process(*base, "--out", tmp_path / "same")  # its own 2 steps, guidance and scheduler
    assert same.returncode == 0 and "warning" not in same.stderr, same.stderr
    changed = ["--steps", "8", "--guidance", "2", "--scheduler", "euler"]
    other = noiseppo.in_process(*base, *changed, "--out", tmp_path / "b")
    assert other.returncode == 0, other.stderr
    err = other.stderr
    assert err == (
        "noiseppo: warning: the policy runs at steps 8 (trained at 2); guidance 2 (trained at 1); scheduler euler "
        "(trained with default); a policy is tuned to the sampler it was trained with, its gain may shrink or turn "
        "negative\n"
    )


def test_eval_warns_for_each_step_count_other_than_the_trained_one(noiseppo, tmp_path) -> None:
    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    args = ["eval", "--policy", "shapes-steps2", "--prompts", str(tmp_path / "p.txt"), "--seeds", "1"]
    done = noiseppo.in_process(*args, "--steps", "1,2", "--bootstrap", "100", "--out", tmp_path / "e")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "noiseppo: warning: the policy runs at steps 1 (trained at 2); a policy is tuned to the sampler it was "
        "trained with, its gain may shrink or turn negative"
    ]


def test_config_yaml_holds_the_guidance_the_run_used(noiseppo, tmp_path) -> None:
    done = noiseppo.in_process(*TINY, "iterations=1", "--out", tmp_path / "run")
    assert done.returncode == 0 and "guidance 1.0" in done.stdout, done.stderr
    assert "\nguidance: 1.0\n" in (tmp_path / "run" / "config.yaml").read_text()
    resumed = noiseppo.in_process("train", "--resume", tmp_path / "run", "iterations=2")  # and resume reads it back
    assert resumed.returncode == 0, resumed.stderr
    assert "\nguidance: 1.0\n" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_run_trained_with_relative_files_works_from_any_folder(noiseppo, tmp_path, monkeypatch) -> None:
    """config.yaml records the reward file, the prompt files and a local model folder by their
    absolute paths (what was typed kept in a comment), so eval, report and --resume run from
    another folder; a run folder written before that (relative paths) still resumes where it was made."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "models").mkdir(parents=True)
    elsewhere.mkdir()
    (work / "my_reward.py").write_text("def redness(images, prompts):\n    return images[:, 0].mean(dim=(1, 2))\n")
    (work / "train.txt").write_text("a red circle\na blue square\na green triangle\n")
    (work / "held.txt").write_text("a red square\na blue circle\n")
    (work / "models" / "shapes").symlink_to(DEFAULT_MODEL)  # a local model folder
    monkeypatch.chdir(work)
    typed = ["--reward", "my_reward.py:redness", "--prompts", "train.txt", "--model", "models/shapes"]
    done = noiseppo.in_process("train", "--preset", "tiny", *typed, "eval_prompts=held.txt", "threads=1", "--out=run")
    assert done.returncode == 0, done.stderr
    text = (work / "run" / "config.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["reward"] == f"{work}/my_reward.py:redness" and config["model"] == f"{work}/models/shapes"
    assert (config["prompts"], config["eval_prompts"]) == (f"{work}/train.txt", f"{work}/held.txt")
    assert text.startswith(
        "# given as model=models/shapes, reward=my_reward.py:redness, prompts=train.txt, eval_prompts=held.txt "
        f"in {work}\n"
    )

    monkeypatch.chdir(elsewhere)
    run = work / "run"
    evaluate = ["eval", "--policy", run, "--prompts", work / "held.txt", "--seeds", "1", "--bootstrap", "100"]
    evaluated = noiseppo.in_process(*evaluate, "--out", "ev")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((elsewhere / "ev" / "eval.json").read_text())["reward"] == config["reward"]
    reported = noiseppo.in_process("report", run, "--out", "page.html")
    assert reported.returncode == 0, reported.stderr
    assert "not rendered" not in (elsewhere / "page.html").read_text()  # the held-out grid: model and prompts found
    resumed = noiseppo.in_process("train", "--resume", run, "iterations=3")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["iteration"] for r in rows(run) if "reward_mean" in r] == [1, 2, 3]

    # As a run folder written before config.yaml held absolute paths: it resumes from its own folder.
    old = "\n".join(line for line in text.splitlines() if not line.startswith("#")).replace(f"{work}/", "")
    (run / "config.yaml").write_text(old.replace("iterations: 2\n", "iterations: 3\n") + "\n")
    monkeypatch.chdir(work)
    resumed = noiseppo.in_process("train", "--resume", run, "iterations=4")
    assert resumed.returncode == 0, resumed.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["reward"] == "my_reward.py:redness"


# -- start-up and help ----------------------------------------------------------------------------

HEAVY = ("torch", "diffusers", "numpy", "PIL", "matplotlib")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--preset", "shape"], "unknown preset 'shape' (did you mean 'shapes'?"),
        (["train", "lerning_rate=1"], "did you mean 'lr'?"),
        (["train", "--reward", "clip-score"], "unknown reward 'clip-score' (did you mean 'clip_score'?"),
        (["train", "--reward", "0.5*shapes+0.5*clipscore"], "unknown reward 'clipscore'"),
        (["train", "--prompts", "no-such-file.txt"], "no-such-file.txt: prompt file not found"),
        (["train", "eval_prompts=shapes-tset"], "unknown prompt set 'shapes-tset'"),
        (["train", "--backend", "diffusers", "--model", "./my-sd-trubo"], "no such model folder: ./my-sd-trubo"),
    ],
)
def test_train_mistakes_are_answered_before_any_heavy_module_loads(args: list[str], message: str, tmp_path) -> None:
    """A mistyped preset, key, reward or prompt file: one line, exit 2, and torch never imported
    (benchmarks/startup.py times these against ``python -c pass``)."""
    argv = [*args, "--out", str(tmp_path / "run")]
    code = (
        "import sys\nfrom noiseppo.cli import entry_point\n"
        f"sys.argv = ['noiseppo', *{argv!r}]\n"
        f"try:\n    entry_point()\nexcept SystemExit as e:\n    code = e.code\n"
        f"print('HEAVY', code, sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.stdout.splitlines()[-1] == "HEAVY 2 []", (result.stdout[-500:], result.stderr[-500:])
    assert result.stderr.startswith("noiseppo: error: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], *[["list", w] for w in
                                  ("presets", "rewards", "backends", "prompts", "policies")]])  # fmt: skip
def test_help_and_listings_import_no_heavy_module(args: list[str]) -> None:
    """Behaviour, not timing (benchmarks/startup.py measures the time): in a fresh interpreter, the
    command runs to its end and none of torch, diffusers, numpy, PIL or matplotlib was imported."""
    code = (
        "import sys\nfrom noiseppo.cli import main\n"
        f"try:\n    code = main({args!r})\nexcept SystemExit as e:\n    code = e.code\n"
        f"print('HEAVY', code, sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "HEAVY 0 []", result.stdout[-500:]


def test_help_texts_and_tables(noiseppo, capsys) -> None:
    runs = noiseppo.many({
        "top": ["--help"], "train": ["train", "--help"], "sample": ["sample", "--help"],
        "base": ["shapes", "train-base", "--help"], "policies": ["list", "policies"], "backends": ["list", "backends"],
    })  # fmt: skip
    assert all(r.returncode == 0 for r in runs.values())
    top = re.sub(r"-\s+", "-", " ".join(runs["top"].stdout.split()))  # argparse wraps after a hyphen
    assert "learn a prompt-conditioned initial-noise policy for a frozen text-to-image model" in top
    assert "argument parsing" not in top
    assert "``" not in runs["train"].stdout and "``" not in runs["base"].stdout
    assert "Needs an even samples_per_prompt." in " ".join(runs["train"].stdout.split())
    assert "later" not in runs["sample"].stdout
    names = [line.split()[0] for line in runs["policies"].stdout.splitlines()]
    assert names == sorted(names, key=natural_key) and names.index("shapes-steps2") < names.index("shapes-steps16")
    assert "U-Net with a transformer bottleneck" in runs["backends"].stdout and "DiT" not in runs["backends"].stdout

    row = {"steps": 4, "metric": "correct", "n": 8, "standard": 0.5, "policy": 0.75, "delta": 0.25, "ci95_low": 0.1}
    row.update(ci95_high=0.4, policy_mu=0.625, delta_mu=0.125)
    header, line = format_table([row]).splitlines()
    assert header.split() == "steps metric n standard policy delta 95% CI policy_mu delta_mu".split()
    assert line.split()[-2:] == ["0.625", "+0.125"]


def readme_blocks(section: str, language: str) -> list[str]:
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readmes_own_model_path_runs_as_written(noiseppo, tmp_path, monkeypatch) -> None:
    """'Your model, your reward': the reward file, the training command and the inference block,
    as a reader runs them, against a tiny random SD pipeline saved as ./my-sd-turbo."""
    import shlex
    import shutil

    from tiny_models import tiny_sd_pipeline

    reward, use = readme_blocks("Your model, your reward", "python")
    (command,) = readme_blocks("Your model, your reward", "bash")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    shutil.copytree(tiny_sd_pipeline(tmp_path / "tiny"), tmp_path / "my-sd-turbo")
    (tmp_path / "my_reward.py").write_text(reward)
    (tmp_path / "my_prompts.txt").write_text("a red bicycle\na cat on a sofa\na blue house\n")
    (tmp_path / "my_held_out.txt").write_text("a green car\na dog\n")

    activate, command = command.split("\n", 1)
    assert activate == "source .venv/bin/activate"  # what puts noiseppo on the PATH (here: this interpreter's)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["noiseppo", "train"]
    small = ["iterations=2", "prompts_per_iteration=2", "samples_per_prompt=2", "eval_seeds=1", "threads=1"]
    at = argv.index("--out")  # beside the command's own KEY=VALUE overrides
    done = noiseppo.in_process(*argv[1:at], *small, *argv[at:])
    assert done.returncode == 0, done.stderr
    assert f"held-out {Path.cwd() / 'my_held_out.txt'}, 1 seed(s) per prompt (2 pairs)" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "runs/mine/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and 0 < rows[-1]["reward_mean"] <= 1  # saturation of images in [0, 1]
    assert (tmp_path / "runs/mine/report.html").is_file()

    namespace: dict = {}
    exec(compile(use, "README.md", "exec"), namespace)
    images, latents, policy = namespace["images"], namespace["latents"], namespace["policy"]
    assert len(images) == 2 and images[0].size == (16, 16)
    assert latents.shape == (2, *policy.config.latent_shape)
    namespace = {}
    exec(compile(reward, "README.md", "exec"), namespace)
    grey, red = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    assert namespace["saturation"](torch.cat([grey, red]), ["a", "b"]) == [0.0, 1.0]


def loading_torch(pid: int) -> bool:
    """Whether process ``pid`` has begun to import torch: what ``noiseppo`` imports first, within
    the handling of Ctrl-C (before it, only the interpreter's own start-up, slower than 0.2 s under load)."""
    try:
        return "/torch/lib/libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_130(noiseppo, tmp_path: Path) -> None:
    """SIGINT while the modules load (torch, diffusers, ...), while the model loads, while a resumed
    run starts and during the untrained policy's held-out pass (issue 34): exit status 130 and one
    line, never a traceback. The delays count from the moment torch begins to load."""
    run = tmp_path / "run"
    assert noiseppo(*TINY, "iterations=1", "--out", run).returncode == 0  # a run to resume
    long = [*TINY, "iterations=50"]  # never done before the signal, however fast the machine
    cases: dict[str, tuple[list, float | None]] = {}  # the command, and the seconds after torch began to load
    for delay in (0.0, 0.5, 1.5, 3.0):
        cases[f"new-{delay}"] = ([*long, "--out", tmp_path / f"new-{delay}"], delay)
    for delay in (0.5, 3.0):
        cases[f"resume-{delay}"] = (["train", "--resume", run, "iterations=50"], delay)
    # None: once the held-out pass of the untrained policy has begun
    cases["held-out"] = (["train", "--preset", "tiny", "threads=1", "iterations=50", "--out", tmp_path / "h"], None)
    for name, (args, delay) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        loaded: list[float] = []
        started: list[subprocess.Popen] = []

        def ready(folder=folder, delay=delay, loaded=loaded, started=started) -> bool:
            if delay is None:
                return "held-out pass" in (folder / "stderr.txt").read_text()
            if not loaded and loading_torch(started[-1].pid):
                loaded.append(time.monotonic())
            return bool(loaded) and time.monotonic() - loaded[0] >= delay

        result = interrupted(noiseppo.command(*args), ready, folder, started)
        assert result.returncode == 130 and "Traceback" not in result.stderr, (name, result.stderr)
        lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(("noise ppo", "held-out pass"))]
        assert len(lines) == 1 and lines[0].startswith("noiseppo: interrupted"), (name, result.stderr)
