"""Every row of docs/hostile_inputs.md, through the real CLI (``noiseppo.cli.main`` in process).

Each case builds its inputs in a fresh folder, runs one command, and checks the contract:
exit status 2, exactly one ``noiseppo: error:`` line holding the documented message, no
traceback, no pickle ever run, and on disk either nothing changed at all or, for a failure
in the middle of a run, a run folder that still holds its last good, readable checkpoint.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import pickle
import re
import shutil
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError

import noiseppo.storage.checkpoint as checkpoint_module
import noiseppo.training.trainer as train_module
from noiseppo.backends import BACKENDS
from noiseppo.backends.shapes import DEFAULT_MODEL
from noiseppo.cli import main
from noiseppo.configs.presets import resolve
from noiseppo.policy import NoisePolicy, load_policy
from noiseppo.rewards import REWARDS, get_reward
from noiseppo.rewards.http import TOKEN_ENV
from noiseppo.rewards.server import make_server
from noiseppo.storage.checkpoint import load_state
from noiseppo.storage.safe_load import WEIGHTS_NAME
from servers import serving
from tiny_models import tiny_flux_pipeline, tiny_sd3_pipeline, tiny_sd_pipeline, tiny_sdxl_pipeline

DOC = Path(__file__).parents[1] / "docs" / "hostile_inputs.md"
TRAIN = ["train", "--preset", "tiny", "eval_prompts="]  # 2 iterations of 8 images, no held-out pass
SAMPLE = ["sample", "--prompt", "a red circle", "--n", "1", "--steps", "1"]
GOLDEN = ["golden", "--noises", "2", "--steps", "1", "--top-k", "1"]
SHORT_PROMPTS = ["--prompts", "{w}/short.txt", "--reward", "jpeg_compressibility"]  # for the tiny pipelines
MARKER = "MARKER"  # created by Bomb if anything ever unpickles one
PICKLERS = {"pickle", "_pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}


class Bomb:
    """A pickle payload that creates a folder when unpickled: proof that nothing ran it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def torch_pickle(path: Path) -> None:
    """What a user might rename: a torch.save file (a zip archive holding a pickle)."""
    torch.save({"weight": torch.zeros(2), "payload": Bomb(path.parent / MARKER)}, path)


def plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps(Bomb(path.parent / MARKER)))


@dataclass
class Case:
    """One row of the table: a command, the inputs it needs, and what it must answer."""

    args: list[str]
    """CLI arguments; ``{w}`` is this case's folder."""
    message: str
    """The stable part of the error line, as the table quotes it."""
    setup: Callable[[Path, Path], None] | None = None
    """Builds the inputs in the case folder, given the case folder and a finished tiny run."""
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    """Registers a custom reward or backend, or breaks the disk."""
    left: int | None = None
    """None: the case folder must be exactly as before. N: the run in {w}/out must hold a
    readable checkpoint at iteration N (the failure came after the run had started)."""
    resumes: bool = False
    """Once the patch is undone, ``--resume`` finishes the run."""
    out: str | None = "{w}/out"
    """Given as ``--out`` (None: the command takes none)."""
    server: dict | None = None
    """``make_server`` keywords: a Shapes reward server runs in a thread during the command,
    and ``{server}`` in the arguments is its URL."""
    stdout: str = ""
    """How stdout starts, for a failure that leaves nothing but came once the work had started
    (``train``'s batch line); a command refused before that prints nothing on stdout."""


def files(**contents: str | bytes) -> Callable[[Path, Path], None]:
    """A setup that writes text or bytes files (``__`` in a name stands for ``/``)."""

    def setup(w: Path, run: Path) -> None:
        for name, content in contents.items():
            path = w / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def pickle_at(name: str) -> Callable[[Path, Path], None]:
    """A setup that writes a plain pickle to {w}/``name``."""

    def setup(w: Path, run: Path) -> None:
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        plain_pickle(w / name)

    return setup


def png(name: str, size: tuple[int, int] = (32, 32)) -> Callable[[Path, Path], None]:
    """A setup that writes an RGB image (32x32 unless ``size``, width x height) to {w}/``name``."""

    def setup(w: Path, run: Path) -> None:
        Image.new("RGB", size, (255, 0, 0)).save(w / name)

    return setup


def golden_outputs(**runs: tuple[str, str]) -> Callable[[Path, Path], None]:
    """A setup that writes ``noiseppo golden`` outputs {w}/NAME for NAME=(steps, seed): 2 prompts x 2 noises."""

    def setup(w: Path, run: Path) -> None:
        (w / "two.txt").write_text("a red circle\na blue square\n")
        for name, (steps, seed) in runs.items():
            args = [*GOLDEN[:3], "--steps", steps, "--seed", seed, "--top-k", "1", "--splits", "10"]
            assert main([*args, "--bootstrap", "100", "--permutations", "100", "--prompts", str(w / "two.txt"),
                         "--out", str(w / name)]) == 0  # fmt: skip

    return setup


def run_with(name: str, make: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    """A setup that copies the finished tiny run to {w}/run and replaces the files ``name``
    matches (a glob, e.g. every checkpoint's) by ``make``."""

    def setup(w: Path, run: Path) -> None:
        shutil.copytree(run, w / "run")
        targets = sorted((w / "run").glob(name))
        assert targets, name
        for target in targets:
            make(target)

    return setup


def model_with(name: str, make: Callable[[Path], None] | None) -> Callable[[Path, Path], None]:
    """A setup that copies the shipped Shapes model to {w}/model and replaces (or removes) a file."""

    def setup(w: Path, run: Path) -> None:
        shutil.copytree(DEFAULT_MODEL, w / "model")
        target = w / "model" / name
        target.unlink()
        if make is not None:
            make(target)

    return setup


def flow_model(kind: str, policy: tuple[tuple[int, ...], int, int] | None = None) -> Callable[[Path, Path], None]:
    """A setup that builds a tiny random pipeline into {w}/``kind``/pipeline ("sd3", "flux" or
    "schnell"), two short prompts into {w}/short.txt, and, given (latent shape, token-state width,
    pooled-vector width), an untrained policy into {w}/policy."""

    def setup(w: Path, run: Path) -> None:
        if kind == "sd3":
            tiny_sd3_pipeline(w / kind)
        else:
            tiny_flux_pipeline(w / kind, guidance_embeds=kind == "flux")
        (w / "short.txt").write_text("a red cat\ntwo dogs\n")  # within the tiny CLIP's 16 tokens
        if policy is not None:
            NoisePolicy(latent_shape=policy[0], token_dim=policy[1], pooled_dim=policy[2]).save_pretrained(w / "policy")

    return setup


def one_and_two_widths(folder: Path) -> None:
    """A policy folder whose config.json has the old one width (cond_dim) beside two others."""
    NoisePolicy(token_dim=32, pooled_dim=8).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"cond_dim": 16}))


DDPO = ["ddpo", "--preset", "tiny", "--no-eval", "--threads", "1"]
DDPO_SHORT = ["prompts={w}/short.txt", "reward=jpeg_compressibility", "steps=1"]


def sd_model(kind: str, run: bool = False) -> Callable[[Path, Path], None]:
    """A setup that builds a tiny random SD ("sd") or SDXL ("sdxl") pipeline into {w}/``kind``/pipeline and
    two short prompts into {w}/short.txt; with ``run``, a finished 2-iteration diffusers DDPO run in {w}/run."""

    def setup(w: Path, _: Path) -> None:
        (tiny_sd_pipeline if kind == "sd" else tiny_sdxl_pipeline)(w / kind)
        (w / "short.txt").write_text("a red cat\ntwo dogs\n")
        if run:
            args = [*DDPO, "--backend", "diffusers", "--model", f"{w}/sd/pipeline", *DDPO_SHORT, "--out", f"{w}/run"]
            assert main([a.replace("{w}", str(w)) for a in args]) == 0

    return setup


def reward(name: str, scores: Callable[[int], object]) -> Callable[[pytest.MonkeyPatch], None]:
    """Register a custom reward ``name`` that answers ``scores(number of images)``."""

    class Custom:
        def __call__(self, images: torch.Tensor, prompts: list[str]):
            return scores(len(prompts))

    return lambda mp: mp.setitem(REWARDS, name, (Custom, "a hostile test reward"))


def absent(module: str) -> Callable[[pytest.MonkeyPatch], None]:
    """``import module`` fails as if its package were not installed (even where it is)."""
    return lambda mp: mp.setitem(sys.modules, module, None)


def token_env(value: str | None) -> Callable[[pytest.MonkeyPatch], None]:
    """``NOISEPPO_REWARD_TOKEN`` set to ``value``, or unset (whatever the shell running the tests holds)."""
    if value is None:
        return lambda mp: mp.delenv(TOKEN_ENV, raising=False)
    return lambda mp: mp.setenv(TOKEN_ENV, value)


def crash(n: int) -> object:
    raise RuntimeError("reward server is down")


class HalfSizeBackend:
    """A custom backend that breaks the contract: 16x16 images, where the Shapes reward reads 32x32."""

    name = "half-size"

    def __init__(self, inner):
        self.inner = inner
        self.latent_shape = inner.latent_shape
        self.token_dim, self.pooled_dim = inner.token_dim, inner.pooled_dim
        self.default_guidance = inner.default_guidance

    def encode(self, prompts: list[str]):
        return self.inner.encode(prompts)

    def generate(self, latents, conditioning, steps, guidance):
        return F.avg_pool2d(self.inner.generate(latents, conditioning, steps, guidance), 2)


def half_size_backend(mp: pytest.MonkeyPatch) -> None:
    shapes = BACKENDS["shapes"][0]
    mp.setitem(BACKENDS, "half-size", (lambda *a: HalfSizeBackend(shapes(*a)), "a hostile test backend"))


def full_disk(error: Exception) -> Callable[[pytest.MonkeyPatch], None]:
    """The third checkpoint write (after iteration 2) runs out of space half way through the file."""

    def patch(mp: pytest.MonkeyPatch) -> None:
        real = checkpoint_module.save_file
        calls = []

        def save_file(tensors: dict, filename: str) -> None:
            real(tensors, filename)
            calls.append(filename)
            if len(calls) == 3:
                with open(filename, "r+b") as f:
                    f.truncate(os.path.getsize(filename) // 2)
                raise error

        mp.setattr(checkpoint_module, "save_file", save_file)

    return patch


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def full_disk_for_metrics(mp: pytest.MonkeyPatch) -> None:
    """The second row appended to metrics.jsonl (iteration 2's) finds the disk full."""
    real = Path.open
    appends = []

    def open_(self: Path, mode: str = "r", *args, **kwargs):
        if self.name == "metrics.jsonl" and mode == "a":
            appends.append(self)
            if len(appends) == 2:
                raise ENOSPC
        return real(self, mode, *args, **kwargs)

    mp.setattr(Path, "open", open_)


# What safetensors itself raises when the disk fills (not an OSError).
SAFETENSORS_ENOSPC = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
GRAMMAR_ERROR = "prompt 'a purple circle': word 2 'purple' is not a colour ('red', 'green', 'blue' or 'yellow')"
PICKLE_NOT_SAFETENSORS = "is a pickle (e.g. from torch.save), not a safetensors file; noiseppo never unpickles files"
PICKLE_NOT_JSON = "is a pickle (e.g. from torch.save), not a JSON file; noiseppo never unpickles files"

CASES: dict[str, Case] = {
    # -- registries and config
    "Shapes held-out prompts asked of another backend": Case(
        ["train", "--preset", "tiny", "--backend", "diffusers", "--model", "{w}/model", "eval_prompts=shapes-test"],
        "config: eval_prompts 'shapes-test' is a Shapes world prompt set, but the backend is 'diffusers': give "
        "eval_prompts=FILE (held-out prompts for your model) or eval_prompts= (no held-out pass)",
    ),
    "unknown backend": Case(
        [*TRAIN, "--backend", "sdxl-turbo"], "unknown backend 'sdxl-turbo' (known: shapes, diffusers, sd3, flux)"
    ),
    "unknown reward": Case(
        [*TRAIN, "--reward", "clip-score"],
        "unknown reward 'clip-score' (did you mean 'clip_score'? known: shapes, shapes-correct, ",
    ),
    "reward whose extra is not installed (imagereward)": Case(
        ["score", "--reward", "imagereward", "--prompt", "a red circle", "{w}/a.png"],
        "reward 'imagereward' needs the image-reward package: pip install image-reward "
        "(its release 1.5 does not import next to transformers>=4.57), or serve it over HTTP",
        png("a.png"),
        patch=absent("ImageReward"),
        out=None,
    ),
    "reward whose extra is not installed (hpsv2)": Case(
        ["score", "--reward", "hpsv2", "--prompt", "a red circle", "{w}/a.png"],
        "reward 'hpsv2' needs the hpsv2 package: pip install 'noiseppo[hpsv2]', "
        "or serve it over HTTP from an environment of its own (README: Reward server)",
        png("a.png"),
        patch=absent("hpsv2"),
        out=None,
    ),
    "unknown preset": Case(
        ["train", "--preset", "tinny"], "unknown preset 'tinny' (did you mean 'tiny'? known: shapes, tiny)"
    ),
    "unknown prompt set": Case(
        [*TRAIN, "--prompts", "shapes-dev"],
        "unknown prompt set 'shapes-dev' (did you mean 'shapes-test'? known: shapes-train, shapes-test, animals, "
        "counting, colour-binding; or give a .txt or .jsonl file)",
    ),
    # -- did you mean: every registry answers a near miss with its nearest name (issue 19)
    "mistyped backend": Case(
        [*TRAIN, "--backend", "diffuser"],
        "unknown backend 'diffuser' (did you mean 'diffusers'? known: shapes, diffusers, sd3, flux)",
    ),
    "mistyped scheduler": Case(
        [*TRAIN, "scheduler=eular"],
        "unknown scheduler 'eular' (did you mean 'euler'? known: ddim, euler, dpm, default)",
    ),
    "mistyped shipped policy": Case(
        [*SAMPLE, "--policy", "shapes-step4"],
        "'shapes-step4' is neither a run folder, a policy folder nor a shipped policy (did you mean 'shapes-steps4'? "
        "shipped: shapes-steps1, shapes-steps2, shapes-steps4, shapes-steps8, shapes-steps16)",
    ),
    "mistyped config key": Case(
        [*TRAIN, "minibach=4"], "override: unknown config key 'minibach' (did you mean 'minibatch'?)"
    ),
    "mistyped key in a config file": Case(
        [*TRAIN, "--config", "{w}/typo.yaml"],
        "typo.yaml: unknown config key 'samples_per_promt' (did you mean 'samples_per_prompt'?)",
        files(**{"typo.yaml": "samples_per_promt: 4\n"}),
    ),
    "unknown config key": Case(
        [*TRAIN, "colour=red"], "override: unknown config key 'colour' (see 'noiseppo train --help')"
    ),
    "override without =": Case([*TRAIN, "steps"], "'steps': overrides are written key=value"),
    # -- KEY=VALUE anywhere on the line, and the same flags on every command (issue 34)
    "mistyped config key between flags": Case(
        ["train", "--preset", "tiny", "--reward", "shapes", "iteratons=3", "--seed", "1"],
        "override: unknown config key 'iteratons' (did you mean 'iterations'?)",
    ),
    "ddpo mistyped key between flags": Case(
        ["ddpo", "--preset", "tiny", "stepz=1", "--threads", "1"],
        "override: unknown config key 'stepz' (did you mean 'steps'?)",
    ),
    "ddpo with an unknown reward flag": Case(
        ["ddpo", "--preset", "tiny", "--reward", "clip-score"],
        "unknown reward 'clip-score' (did you mean 'clip_score'? known: shapes, shapes-correct, ",
    ),
    "mistyped setting of a command with flags": Case(
        ["eval", "--policy", "shapes-steps4", "rewrd=shapes"],
        "'rewrd=shapes': noiseppo eval has no setting 'rewrd' (did you mean 'reward'?)",
    ),
    "setting of a command with flags, out of range": Case(
        [*SAMPLE, "seed=-1"], "argument --seed: must be >= 0, got -1 (see 'noiseppo sample --help')"
    ),
    "value of the wrong type": Case([*TRAIN, "lr=fast"], "override: 'lr' must be a float, got 'fast'"),
    "NaN value": Case([*TRAIN, "kl_coef=nan"], "override: 'kl_coef' must be a float other than NaN, got 'nan'"),
    "malformed YAML": Case(
        [*TRAIN, "--config", "{w}/bad.yaml"], "bad.yaml:1: malformed YAML (", files(**{"bad.yaml": "lr: [1, 2\n"})
    ),
    "config file that is not a mapping": Case(
        [*TRAIN, "--config", "{w}/list.yaml"],
        "list.yaml: expected a mapping of config keys, got list",
        files(**{"list.yaml": "- 1\n- 2\n"}),
    ),
    # -- sizes and batch arithmetic
    "zero size": Case([*TRAIN, "prompts_per_iteration=0"], "config: 'prompts_per_iteration' must be >= 1, got 0"),
    "negative size": Case([*TRAIN, "samples_per_prompt=-4"], "config: 'samples_per_prompt' must be >= 1, got -4"),
    "another library's name for a key": Case(
        [*TRAIN, "lerning_rate=1e-3"], "override: unknown config key 'lerning_rate' (did you mean 'lr'?)"
    ),
    "negative minibatch": Case(
        [*TRAIN, "minibatch=-4"], "config: 'minibatch' must be >= 0 (0: the whole batch), got -4"
    ),
    "zero flag": Case([*TRAIN, "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    "negative rate": Case([*TRAIN, "lr=-0.001"], "config: 'lr' must be a finite number > 0, got -0.001"),
    "minibatch that does not divide": Case(
        [*TRAIN, "minibatch=3"],
        "config: minibatch 3 does not divide the batch of 8 samples (prompts_per_iteration 2 x samples_per_prompt 4)",
    ),
    "unknown advantage estimator": Case(
        [*TRAIN, "advantages=ranks"], "config: advantages must be 'zscore' or 'rank', got 'ranks'"
    ),
    "rank advantages with the stat tracker": Case(
        [*TRAIN, "advantages=rank", "adv_buffer=32"],
        "config: advantages 'rank' ranks each prompt's group alone; it needs adv_buffer 0",
    ),
    "unknown policy readout": Case(
        [*TRAIN, "readout=pixel"], "config: readout must be 'shared', 'cell', 'token' or 'position', got 'pixel'"
    ),
    "noise centring without shared noise": Case(
        [*TRAIN, "noise_centring=1"],
        "config: noise_centring needs shared_noise (a noise's mean is over the prompts sharing it)",
    ),
    "noise centring above 1": Case(
        [*TRAIN, "shared_noise=true", "noise_centring=1.5"], "config: noise_centring must be in [0, 1], got 1.5"
    ),
    "unknown learning-rate schedule": Case(
        [*TRAIN, "lr_schedule=linear"], "config: lr_schedule must be 'constant' or 'cosine', got 'linear'"
    ),
    "final learning rate above lr": Case([*TRAIN, "lr_final=2"], "config: lr_final must be in [0, 1], got 2.0"),
    "Adam momentum of 1": Case([*TRAIN, "adam_beta1=1"], "config: adam_beta1 must be in [0, 1), got 1.0"),
    "zero query scale": Case([*TRAIN, "query_std=0"], "config: 'query_std' must be a finite number > 0, got 0.0"),
    # -- prompt files
    "empty prompt file": Case(
        [*TRAIN, "--prompts", "{w}/empty.txt"], "empty.txt: no prompts in file", files(**{"empty.txt": "# none\n\n"})
    ),
    "unreadable prompt file": Case(
        [*TRAIN, "--prompts", "{w}/latin1.txt"],
        "latin1.txt: cannot read prompt file (",
        files(**{"latin1.txt": b"a red circle\n\xff\xfe\n"}),
    ),
    "missing prompt file": Case([*TRAIN, "--prompts", "{w}/missing.txt"], "missing.txt: prompt file not found"),
    "prompt file of another type": Case(
        [*TRAIN, "--prompts", "{w}/prompts.csv"],
        "prompts.csv: unsupported prompt file type '.csv' (use .txt or .jsonl)",
        files(**{"prompts.csv": "a red circle\n"}),
    ),
    "bad line in a .jsonl prompt file": Case(
        [*TRAIN, "--prompts", "{w}/bad.jsonl"],
        'bad.jsonl:2: expected a JSON string or an object with a string "prompt" field',
        files(**{"bad.jsonl": '{"prompt": "a red circle"}\n{"prompt": 3}\n'}),
    ),
    "prompt outside the grammar": Case(
        [*TRAIN, "--prompts", "{w}/purple.txt"],
        GRAMMAR_ERROR,
        files(**{"purple.txt": "a red circle\na purple circle\n"}),
    ),
    "held-out prompt outside the grammar": Case(
        ["train", "--preset", "tiny", "eval_prompts={w}/purple.txt"],
        GRAMMAR_ERROR,
        files(**{"purple.txt": "a purple circle\n"}),
    ),
    # -- output folders
    "run folder that exists and is not a run": Case(
        TRAIN, "out: run folder exists and is not empty; use --resume or a new folder", files(out__keep="mine\n")
    ),
    "run folder below a file": Case(
        TRAIN, "a-file: is a file, so the output", files(**{"a-file": "mine\n"}), out="{w}/a-file/runs/run"
    ),
    "resume of a folder that is not a run": Case(
        ["train", "--resume", "{w}/out"],
        "out: not a run folder to resume (needs config.yaml and checkpoint/)",
        files(out__keep="mine\n"),
        out=None,
    ),
    # -- resume and extend (issue 19): only a larger iterations
    "resume of a folder that does not exist": Case(
        ["train", "--resume", "{w}/nope"], "nope: run folder does not exist", out=None
    ),
    "resume with another setting": Case(
        ["train", "--resume", "{w}/run", "lr=1e-4", "--seed", "3"],
        "--resume RUN_DIR continues a run with its saved config; of the settings it takes only iterations=N, "
        "not --seed, lr",
        run_with("config.yaml", lambda p: None),
        out=None,
    ),
    "resume with fewer iterations": Case(
        ["train", "--resume", "{w}/run", "iterations=2"],
        "run: iterations=2 is fewer than the run's 3; a resumed run can only be extended",
        run_with("config.yaml", lambda p: p.write_text(p.read_text().replace("iterations: 1\n", "iterations: 3\n"))),
        out=None,
    ),
    "sample output folder that is not empty": Case(
        SAMPLE, "out: output path exists and is not empty; choose a new one", files(out__keep="mine\n")
    ),
    "train-base folder that is not a run": Case(
        ["shapes", "train-base", "--optimizer-steps", "1"],
        "out: exists and is not a train-base run; choose a new folder",
        files(out__keep="mine\n"),
    ),
    "train-base folder below a file": Case(
        ["shapes", "train-base", "--optimizer-steps", "1"],
        "a-file: is a file, so the output",
        files(**{"a-file": "mine\n"}),
        out="{w}/a-file/runs/base",
    ),
    "train-base on a device that does not exist": Case(
        ["shapes", "train-base", "--optimizer-steps", "1", "--device", "gpu0"],
        "unknown device 'gpu0' (e.g. cpu, cuda, cuda:1)",
    ),
    "train-base width the model cannot split": Case(
        ["shapes", "train-base", "--optimizer-steps", "1", "--dim", "8"],
        "--dim must be a multiple of 32 (dim/4 channels in 8 groups), got 8",
    ),
    "train-base text width the heads cannot split": Case(
        ["shapes", "train-base", "--optimizer-steps", "1", "--text-dim", "10"],
        "--text-dim must be a multiple of 4 (the text encoder's attention heads), got 10",
    ),
    "train-base setting out of range": Case(
        ["shapes", "train-base", "--optimizer-steps", "1", "--eval-every", "0"],
        "--eval-every must be >= 1, got 0",
    ),
    # -- custom rewards and backends, which fail only once the run has started
    "reward that raises": Case(
        [*TRAIN, "--reward", "crashes"],
        "the reward raised RuntimeError: reward server is down",
        patch=reward("crashes", crash),
        left=0,
    ),
    "reward that raises, held-out pass on": Case(
        ["train", "--preset", "tiny", "eval_prompts={w}/one.txt", "--reward", "crashes"],
        "the reward raised RuntimeError: reward server is down",
        files(**{"one.txt": "a red circle\n"}),
        patch=reward("crashes", crash),
        stdout="batch: 2 prompts x 4 samples = 8 images per iteration",
    ),
    "reward that returns NaN": Case(
        [*TRAIN, "--reward", "nan"],
        "reward 'nan', training iteration 1: NaN for 8 of 8 images (max_nan_fraction is 0.1)",
        patch=reward("nan", lambda n: torch.full((n,), float("nan"))),
        left=0,
    ),
    "reward that returns inf": Case(
        [*TRAIN, "--reward", "inf"],
        "the reward returned an infinite score",
        patch=reward("inf", lambda n: torch.full((n,), float("inf"))),
        left=0,
    ),
    "reward that returns the wrong number of scores": Case(
        [*TRAIN, "--reward", "short"],
        "the reward returned 7 scores for 8 images",
        patch=reward("short", lambda n: torch.zeros(n - 1)),
        left=0,
    ),
    "reward that returns no numbers": Case(
        [*TRAIN, "--reward", "words"],
        "the reward returned something that is not a list of numbers (",
        patch=reward("words", lambda n: ["good"] * n),
        left=0,
    ),
    "reward module that does not exist": Case(
        [*TRAIN, "--reward", "no_such_module:score"],
        "reward 'no_such_module:score': no module named 'no_such_module' (not in the current folder or PYTHONPATH)",
    ),
    "reward server that refuses the connection": Case(
        [*TRAIN, "--reward", "http://127.0.0.1:9/score#retries=0"],
        "reward server http://127.0.0.1:9/score: no scores after 1 try (",
        left=0,
    ),
    "reward URL token that cannot be a bearer token": Case(
        [*TRAIN, "--reward", "http://127.0.0.1:9/score#token=a%20b"],
        "reward 'http://127.0.0.1:9/score': #token: a token may hold only letters, digits and - . _ ~ + / "
        "(then = padding)",
    ),
    "empty reward token in the environment": Case(
        [*TRAIN, "--reward", "http://127.0.0.1:9/score"],
        "NOISEPPO_REWARD_TOKEN: the token is empty",
        patch=token_env(""),
    ),
    "reward server that wants a token": Case(
        [*TRAIN, "--reward", "{server}"],
        "refused the batch (HTTP 401: this server needs a bearer token (the reward URL's #token=... or "
        "NOISEPPO_REWARD_TOKEN))",
        patch=token_env(None),
        left=0,
        server={"token": "s3cret"},
    ),
    "reward server that gets the wrong token": Case(
        [*TRAIN, "--reward", "{server}#token=guess"],
        "refused the batch (HTTP 401: wrong bearer token)",
        left=0,
        server={"token": "s3cret"},
    ),
    "batch over the reward server's body limit": Case(
        [*TRAIN, "--reward", "{server}"],
        "MB is over this server's limit of 0.001 MB (--max-body-mb); send fewer images per request (render_batch))",
        patch=token_env(None),
        left=0,
        server={"max_body_mb": 0.001},
    ),
    "reward server limit that is not positive": Case(
        ["reward-server", "--reward", "shapes", "--max-body-mb", "0"],
        "argument --max-body-mb: must be a finite number > 0, got '0' (see 'noiseppo reward-server --help')",
        out=None,
    ),
    "empty reward server token": Case(
        ["reward-server", "--reward", "shapes", "--token", ""], "--token: the token is empty", out=None
    ),
    "diffusers model folder that is not a pipeline": Case(
        [*TRAIN, "--backend", "diffusers", "--model", "{w}/model"],
        "no file named model_index.json found in directory",
        files(model__keep="mine\n"),
    ),
    "mistyped model folder": Case(
        [*TRAIN, "--backend", "diffusers", "--model", "./my-sd-trubo"], "no such model folder: ./my-sd-trubo"
    ),
    "model folder that does not exist, for a command other than train": Case(
        [*SAMPLE, "--backend", "diffusers", "--model", "{w}/models/sd-turbo"], "no such model folder: "
    ),
    # -- flow-matching pipelines (tiny random ones, built in the case folder)
    "pipeline of a class the backend does not take": Case(
        [*TRAIN, "--backend", "sd3", "--model", "{w}/flux/pipeline"],
        "is a FluxPipeline; the sd3 backend takes StableDiffusion3Pipeline (for a FluxPipeline use --backend flux)",
        flow_model("flux"),
    ),
    "scheduler that does not apply to a flow model": Case(
        [*TRAIN, "scheduler=ddim", "--backend", "flux", "--model", "{w}/model"],
        "scheduler 'ddim' does not apply to the flow-matching flux backend: it takes only 'default' "
        "(the pipeline's own FlowMatchEulerDiscreteScheduler)",
        files(model__keep="mine\n"),  # a folder, not a pipeline: refused before it is loaded
    ),
    "guidance the model does not take": Case(
        [*TRAIN, "guidance=3.5", "--backend", "flux", "--model", "{w}/schnell/pipeline", *SHORT_PROMPTS],
        "guidance 3.5 asked for, but this FLUX model has no guidance input (guidance_embeds is false, "
        "as for FLUX.1-schnell): use guidance 0",
        flow_model("schnell"),
    ),
    "policy trained for another model family": Case(
        [*SAMPLE, "--policy", "{w}/policy", "--backend", "sd3", "--model", "{w}/sd3/pipeline"],
        "the policy is for latents of shape (16, 8, 8), token states 24 wide and pooled vectors 16 wide; backend "
        "'sd3' has latents of shape (16, 8, 8), token states 32 wide and pooled vectors 32 wide",
        flow_model("sd3", policy=((16, 8, 8), 24, 16)),  # a FLUX policy: FLUX's latent shape is SD3's
    ),
    "policy trained for another latent shape": Case(
        [*SAMPLE, "--policy", "{w}/policy", "--backend", "flux", "--model", "{w}/flux/pipeline"],
        "the policy is for latents of shape (4, 8, 8), token states 16 wide and pooled vectors 16 wide; backend "
        "'flux' has latents of shape (16, 8, 8), token states 24 wide and pooled vectors 16 wide",
        flow_model("flux", policy=((4, 8, 8), 16, 16)),  # an SD policy
    ),
    "backend images of the wrong size": Case(
        [*TRAIN, "--backend", "half-size"],
        "the backend made images of shape (8, 3, 16, 16), the reward reads (8, 3, 32, 32)",
        patch=half_size_backend,
        left=0,
    ),
    "steps beyond the backend's range": Case([*TRAIN, "steps=60"], "steps must be a whole number from 1 to 50, got 60"),
    # -- a full disk while checkpointing: the previous checkpoint stays, and --resume finishes the run
    "full disk writing metrics.jsonl": Case(
        TRAIN,
        "out/metrics.jsonl: cannot write (No space left on device); resume once there is room",
        patch=full_disk_for_metrics,
        left=1,
        resumes=True,
    ),
    "full disk during a checkpoint": Case(
        TRAIN,
        "checkpoint: cannot write step 2 (No space left on device); the earlier checkpoints are kept",
        patch=full_disk(ENOSPC),
        left=1,
        resumes=True,
    ),
    "full disk as safetensors reports it": Case(
        TRAIN,
        "checkpoint: cannot write step 2 (Error while serializing: I/O error: No space left on device (os error 28)); "
        "the earlier checkpoints are kept",
        patch=full_disk(SAFETENSORS_ENOSPC),
        left=1,
        resumes=True,
    ),
    # -- pickles where safetensors or JSON belong: refused by name, never run
    "pickled checkpoint weights (every kept step)": Case(
        ["train", "--resume", "{w}/run"],
        f"run/checkpoint/step-00000001/state.safetensors: {PICKLE_NOT_SAFETENSORS} (and no older checkpoint verifies)",
        run_with("checkpoint/step-*/state.safetensors", torch_pickle),
        out=None,
    ),
    "pickled checkpoint metadata (every kept step)": Case(
        ["train", "--resume", "{w}/run"],
        f"run/checkpoint/step-00000001/state.json: {PICKLE_NOT_JSON} (and no older checkpoint verifies)",
        run_with("checkpoint/step-*/state.json", plain_pickle),
        out=None,
    ),
    "pickled policy weights": Case(
        [*SAMPLE, "--policy", "{w}/run"],
        f"run/policy/{WEIGHTS_NAME}: {PICKLE_NOT_SAFETENSORS}",
        run_with(f"policy/{WEIGHTS_NAME}", torch_pickle),
    ),
    "policy config with one width and two": Case(
        [*SAMPLE, "--policy", "{w}/policy"],
        "policy: cannot load the policy: cond_dim 16 (the one width of policies saved before token_dim and "
        "pooled_dim) with token_dim 32 and pooled_dim 8: give one or the other",
        lambda w, run: one_and_two_widths(w / "policy"),
    ),
    "pickled policy config": Case(
        ["eval", "--policy", "{w}/run", "--prompts", "shapes-test"],
        f"run/policy/config.json: {PICKLE_NOT_JSON}",
        run_with("policy/config.json", plain_pickle),
    ),
    "pickled model weights": Case(
        [*SAMPLE, "--model", "{w}/model"],
        f"model/denoiser/{WEIGHTS_NAME}: {PICKLE_NOT_SAFETENSORS}",
        model_with(f"denoiser/{WEIGHTS_NAME}", torch_pickle),
    ),
    "model with pickled .bin weights only": Case(
        [*SAMPLE, "--model", "{w}/model"],
        f"model/denoiser/{WEIGHTS_NAME}: file not found (weights are read from safetensors only)",
        model_with(f"denoiser/{WEIGHTS_NAME}", lambda p: torch_pickle(p.with_name("diffusion_pytorch_model.bin"))),
    ),
    "pickled model scheduler config": Case(
        [*SAMPLE, "--model", "{w}/model"],
        f"model/scheduler/scheduler_config.json: {PICKLE_NOT_JSON}",
        model_with("scheduler/scheduler_config.json", plain_pickle),
    ),
    "pickled train-base --init weights": Case(
        ["shapes", "train-base", "--optimizer-steps", "1", "--init", "{w}/model"],
        f"model/text_encoder/{WEIGHTS_NAME}: {PICKLE_NOT_SAFETENSORS}",
        model_with(f"text_encoder/{WEIGHTS_NAME}", torch_pickle),
    ),
    "pickled train-base config": Case(
        ["shapes", "train-base", "--resume"], f"out/config.json: {PICKLE_NOT_JSON}", pickle_at("out/config.json")
    ),
    "pickled --config file": Case(
        [*TRAIN, "--config", "{w}/config.yaml"],
        "config.yaml: cannot read the config (UnicodeDecodeError)",
        pickle_at("config.yaml"),
    ),
    # -- noiseppo golden (issue 14): refused before anything renders or is written
    "golden with one noise": Case(["golden", "--noises", "1"], "--noises: need at least 2 noises to compare, got 1"),
    "golden with one prompt": Case(
        [*GOLDEN, "--prompts", "{w}/one.txt"],
        "--prompts: need at least 2 prompts to compare noises across, got 1",
        files(**{"one.txt": "a red circle\n"}),
    ),
    "golden step list that is not numbers": Case(
        ["golden", "--steps", "1,two"], "--steps: expected comma-separated whole numbers, got '1,two'"
    ),
    "golden step count of zero": Case(["golden", "--steps", "0,4"], "--steps: every value must be >= 1, got '0,4'"),
    "golden noises that do not match the steps": Case(
        ["golden", "--steps", "1,2,4", "--noises", "8,8"],
        "--noises: give one number for every step count or one per step count (3), got '8,8'",
    ),
    "golden top-k above half the noises": Case(
        ["golden", "--noises", "4", "--top-k", "3"], "--top-k: must be between 1 and half the fewest noises (2), got 3"
    ),
    "golden policy trained for another latent shape": Case(
        [*GOLDEN, "--prompts", "{w}/two.txt", "--policy", "{w}/policy"],
        "the policy is for latents of shape (4, 8, 8), token states 16 wide and pooled vectors 16 wide; backend "
        "'shapes' has latents of shape (3, 32, 32), token states 64 wide and pooled vectors 64 wide",
        lambda w, run: (
            files(**{"two.txt": "a red circle\na blue square\n"})(w, run),
            NoisePolicy(latent_shape=(4, 8, 8), token_dim=16, pooled_dim=16).save_pretrained(w / "policy"),
        ),
    ),
    "golden policy test with a template of one prompt": Case(
        [*GOLDEN, "--prompts", "{w}/two.txt", "--policy", "shapes-steps4"],
        "prompt 0 ('single' template): the policy comparison needs another prompt of its template and one of "
        "another template; give more prompts or no --policy",
        files(**{"two.txt": "a red circle\ntwo blue squares\n"}),
    ),
    "golden --from a folder without golden.json": Case(
        ["golden", "--from", "{w}"], "not a noiseppo golden output folder (no golden.json)"
    ),
    "golden --from with rendering flags": Case(
        ["golden", "--from", "{w}", "--steps", "4"],
        "--from re-analyses a previous run's renders; --steps cannot change them",
    ),
    "golden --from the same step count twice": Case(
        ["golden", "--top-k", "1", "--from", "{w}/a", "--from", "{w}/a"],
        "step count 1 is also in another folder",
        golden_outputs(a=("1", "0")),
    ),
    "golden --from runs of two experiments": Case(
        ["golden", "--top-k", "1", "--from", "{w}/a", "--from", "{w}/b"],
        "its seed differs from that of",
        golden_outputs(a=("1", "0"), b=("2", "1")),
    ),
    # -- noiseppo compare and search (issue 13): refused before anything is written
    "compare golden noises above their candidates": Case(
        ["compare", "--methods", "standard,golden-top-8", "--golden-noises", "4"],
        "--methods: 'golden-top-8' picks more noises than --golden-noises 4",
    ),
    "compare with an unknown method": Case(
        ["compare", "--methods", "standard,best-of-four"],
        "--methods: unknown method 'best-of-four' (known: standard, best-of-N, search@B, noise-ppo, ",
    ),
    # -- noiseppo ddpo --backend diffusers (LoRA on a StableDiffusionPipeline's U-Net)
    # -- noiseppo compare on another backend than shapes (issue 34): the Shapes world's defaults and methods
    "compare ddpo on a flow-matching model": Case(
        ["compare", "--methods", "standard,ddpo", "--backend", "flux", "--model", "{w}/model", *SHORT_PROMPTS],
        "--methods: 'ddpo' runs on --backend shapes and diffusers, not flux: DDPO tunes a copy of the Shapes "
        "denoiser or LoRA on a Stable Diffusion U-Net, and samples with DDIM's Gaussian steps, which the "
        "flow-matching models (sd3, flux) do not take",
    ),
    "compare on a pipeline without held-out prompts": Case(
        ["compare", "--methods", "standard", "--backend", "diffusers", "--model", "{w}/m", "--reward", "clip_score"],
        "--backend diffusers: give the held-out prompts, --prompts FILE (or eval_prompts=)",
    ),
    "compare on a pipeline with the Shapes verifier": Case(
        ["compare", "--methods", "standard", "--backend", "diffusers", "--model", "{w}/m", "--prompts", "animals"],
        "--backend diffusers: give the reward, --reward NAME (or module:function)",
    ),
    "compare on a pipeline scored by the Shapes verifier": Case(
        ["compare", "--methods", "standard", "--backend", "sd3", "--model", "{w}/m", "--prompts", "animals"]
        + ["--reward", "shapes-correct"],
        "--reward shapes-correct is the Shapes verifier, which reads only the embedded Shapes model's images: give "
        "--backend sd3 a reward of its own (noiseppo list rewards, module:function)",
    ),
    "compare training on the preset's Shapes prompts on a pipeline": Case(
        ["compare", "--methods", "standard,golden-top-2", "--backend", "diffusers", "--model", "{w}/m"]
        + ["--prompts", "animals", "--reward", "jpeg_compressibility"],
        "--methods: 'golden-top-2' trains on the preset's prompts 'shapes-train', Shapes prompts: give --backend "
        "diffusers training prompts of its own, prompts=FILE",
    ),
    "compare given its held-out prompts twice": Case(
        ["compare", "--methods", "standard", "--prompts", "animals", "eval_prompts=counting"],
        "'eval_prompts=counting': give the prompts once, as --prompts or as eval_prompts=",
    ),
    "compare with a mistyped preset key": Case(
        ["compare", "--methods", "standard", "samples_per_promt=2"],
        "override: unknown config key 'samples_per_promt' (did you mean 'samples_per_prompt'?)",
    ),
    "compare with a shipped Shapes policy on a pipeline": Case(
        ["compare", "--methods", "standard,policy:shapes-steps4", "--backend", "diffusers"]
        + ["--model", "{w}/sd/pipeline", *SHORT_PROMPTS],
        "--methods: 'policy:shapes-steps4': the policy is for latents of shape (3, 32, 32), token states 64 wide "
        "and pooled vectors 64 wide; backend 'diffusers' has latents of shape (4, 8, 8)",
        sd_model("sd"),
    ),
    "ddpo on a flow-matching backend": Case(
        [*DDPO, "--backend", "flux", "--model", "{w}/model"],
        "DDPO runs on the shapes and diffusers (Stable Diffusion) backends, not 'flux': flow-matching models "
        "(sd3, flux) sample without DDIM's Gaussian steps",
    ),
    "ddpo on an SDXL pipeline": Case(
        [*DDPO, "--backend", "diffusers", "--model", "{w}/sdxl/pipeline", *DDPO_SHORT],
        "DDPO with --backend diffusers takes a StableDiffusionPipeline (SD 1.x/2.x, SD-Turbo); the model is a "
        "StableDiffusionXLPipeline",
        sd_model("sdxl"),
    ),
    "ddpo LoRA target the U-Net lacks": Case(
        [*DDPO, "--backend", "diffusers", "--model", "{w}/sd/pipeline", *DDPO_SHORT, "--lora-targets", "to_q,attn"],
        "--lora-targets: no module of the U-Net is named 'attn' (e.g. to_q, to_k, to_v, to_out.0, proj_in, proj_out)",
        sd_model("sd"),
    ),
    "ddpo LoRA rank below 1": Case(
        [*DDPO, "--backend", "diffusers", "--model", "{w}/sd/pipeline", *DDPO_SHORT, "--lora-rank", "0"],
        "--lora-rank must be >= 1, got 0",
        sd_model("sd"),
    ),
    "ddpo LoRA alpha that is not positive": Case(
        [*DDPO, "--backend", "diffusers", "--model", "{w}/sd/pipeline", *DDPO_SHORT, "--lora-alpha", "-1"],
        "--lora-alpha must be a finite number > 0, got -1.0",
        sd_model("sd"),
    ),
    "ddpo LoRA setting on the Shapes model": Case(
        [*DDPO, "--lora-rank", "8"],
        "--lora-rank applies to --backend diffusers (LoRA); the Shapes DDPO tunes a full copy",
    ),
    "ddpo of the Shapes model in another dtype": Case(
        [*DDPO, "--dtype", "bfloat16"], "the Shapes DDPO runs on cpu in float32, got cpu and bfloat16"
    ),
    "ddpo with no stochastic step": Case(
        [*DDPO, "steps=1"],
        "DDPO at 1 step(s) has no stochastic step to train (a step to alpha-bar 1 is deterministic): use steps >= 2",
    ),
    "ddpo without an output folder": Case(DDPO, "give --out RUN_DIR (or --resume RUN_DIR)", out=None),
    "ddpo resume of a folder that is not a DDPO run": Case(
        ["ddpo", "--resume", "{w}/run"],
        "run: not a DDPO run folder to resume (needs config.json and checkpoint/)",
        files(**{"run__config.json": "{}"}),
        out=None,
    ),
    "ddpo resume of a run whose config.json is not DDPO's": Case(
        ["ddpo", "--resume", "{w}/run"],
        "run/config.json: not a DDPO run's settings (KeyError)",
        files(**{"run__config.json": "{}", "run__checkpoint__step-00000001__state.json": "{}"}),
        out=None,
    ),
    "ddpo resume with another setting": Case(
        ["ddpo", "--resume", "{w}/run", "--lr", "1e-3"],
        "--resume continues with the run's saved settings: it takes --iterations and --threads, not --lr",
        out=None,
    ),
    "ddpo resume to fewer iterations than done": Case(
        ["ddpo", "--resume", "{w}/run", "--iterations", "1"],
        "--iterations 1: the run in ",
        sd_model("sd", run=True),
        out=None,
    ),
    "search budget below one generation": Case(
        ["search", "--prompt", "a red circle", "--budget", "8"],
        "--budget 8 is below one generation of --group 16 renders per prompt",
    ),
    "search with an unknown reward": Case(
        ["search", "--prompt", "a red circle", "--reward", "clip-score"], "unknown reward 'clip-score' ("
    ),
    "search with a reward server that refuses the connection": Case(
        [
            "search",
            "--prompt",
            "a red circle",
            "--budget",
            "2",
            "--group",
            "2",
            "--steps",
            "1",
            "--reward",
            "http://127.0.0.1:9/score#retries=0",
        ],
        "reward server http://127.0.0.1:9/score: no scores after 1 try (",
    ),  # fmt: skip
    # -- noiseppo report (issue 15): refused before anything renders or is written
    "report of a folder that is neither a run nor an eval": Case(
        ["report", "{w}/notes"],
        "notes: neither a run folder (config.yaml, from noiseppo train), an eval folder "
        "(eval.json, from noiseppo eval) nor a compare folder (compare.json, from noiseppo compare)",
        files(**{"notes__todo.txt": "look at the run\n"}),
        out=None,
    ),
    "report of a folder that does not exist": Case(
        ["report", "{w}/missing"], "missing: no such folder (give a run, eval or compare folder)", out=None
    ),
    "report of a compare.json that is not one": Case(
        ["report", "{w}/cmp"],
        "compare.json: not a compare.json of noiseppo compare",
        files(**{"cmp__compare.json": '{"rows": []}'}),
        out=None,
    ),
    "report of an eval.json that is not one": Case(
        ["report", "{w}/ev"],
        "ev/eval.json: not an eval.json of noiseppo eval (no 'results' list)",
        files(**{"ev__eval.json": '{"results": 3}'}),
        out=None,
    ),
    "report written over a folder": Case(
        ["report", "{w}/run", "--out", "{w}/run"],
        "run: is a folder; give the report's file name, e.g. ",
        lambda w, run: shutil.copytree(run, w / "run"),
        out=None,
    ),
    "report into a folder that does not exist": Case(
        ["report", "{w}/run", "--out", "{w}/no-such-folder/page.html"],
        "no-such-folder: folder of the report does not exist",
        lambda w, run: shutil.copytree(run, w / "run"),
        out=None,
    ),
    # -- end of noiseppo report
    # -- score, shapes render and usage (moved here from test_cli.py, test_train.py, test_eval.py, ...: issue 20)
    "score with a prompt count that is neither one nor one per image": Case(
        ["score", "--prompt", "a red circle", "--prompt", "a blue square", "{w}/a.png", "{w}/a.png", "{w}/a.png"],
        "give one --prompt for all images or one per image; got 2 for 3 images",
        png("a.png"),
        out=None,
    ),
    "score with a prompt outside the grammar": Case(
        ["score", "--prompt", "a red hexagon", "{w}/a.png"],
        "noiseppo: error: prompt 'a red hexagon': word 3 'hexagon' is not a shape ('circle', 'square' or 'triangle')",
        png("a.png"),
        out=None,
    ),
    "score with a prompt holding a newline": Case(
        ["score", "--prompt", "a red\nhexagon", "{w}/a.png"],
        "prompt 'a red\\nhexagon': word 3 'hexagon' is not a shape",
        png("a.png"),
        out=None,
    ),
    "score of an image that does not exist": Case(
        ["score", "--prompt", "a red circle", "{w}/a.png", "{w}/nowhere.png"],
        "nowhere.png: image not found",
        png("a.png"),
        out=None,
    ),
    "score of a file that is not an image": Case(
        ["score", "--prompt", "a red circle", "{w}/notes.png"],
        "notes.png: cannot read image (",
        files(**{"notes.png": "this is not a picture\n"}),
        out=None,
    ),
    "score of an image of another size": Case(
        ["score", "--prompt", "a red circle", "{w}/a.png", "{w}/big.png"],
        "big.png: image is 48x64, reward 'shapes' reads 32x32 (it never resizes)",
        lambda w, run: (png("a.png")(w, run), png("big.png", (48, 64))(w, run)),
        out=None,
    ),
    "score with an unknown reward": Case(
        ["score", "--reward", "clip", "--prompt", "a red circle", "{w}/a.png"],
        "unknown reward 'clip' (known: shapes, shapes-correct, ",
        png("a.png"),
        out=None,
    ),
    "score with a reward that returns too few scores": Case(
        ["score", "--reward", "short", "--prompt", "a red circle", "{w}/a.png"],
        "the reward returned 0 scores for 1 images",
        png("a.png"),
        patch=reward("short", lambda n: torch.zeros(n - 1)),
        out=None,
    ),
    "shapes render output folder that is not empty": Case(
        ["shapes", "render", "--prompt", "a red circle"],
        "out: output path exists and is not empty; choose a new one",
        files(out__keep="mine\n"),
    ),
    "shapes render below a file": Case(
        ["shapes", "render", "--prompt", "a red circle"],
        "a-file: is a file, so the output",
        files(**{"a-file": "mine\n"}),
        out="{w}/a-file/out",
    ),
    "shapes render output that is a file": Case(
        ["shapes", "render", "--prompt", "a red circle"],
        "a-file: is a file, not a folder; give a folder that does not exist yet or is empty",
        files(**{"a-file": ""}),
        out="{w}/a-file",
    ),
    "train run folder that is a file": Case(
        TRAIN,
        "a-file: is a file, not a folder; give a folder that does not exist yet or is empty",
        files(**{"a-file": ""}),
        out="{w}/a-file",
    ),
    "shapes render prompt that ends too soon": Case(
        ["shapes", "render", "--prompt", "a blue square", "--prompt", "two red"],
        "prompt 'two red': ends after word 2, expected a plural shape",
    ),
    "shapes render prompt file with a repeated object": Case(
        ["shapes", "render", "--prompts", "{w}/bad.jsonl"],
        "prompt 'a red circle and a red circle': word 7 'circle' repeats 'red circle'",
        files(**{"bad.jsonl": '{"prompt": "a red circle"}\n{"prompt": "a red circle and a red circle"}\n'}),
    ),
    "shapes render without prompts": Case(
        ["shapes", "render"], "give either --prompt (repeatable) or --prompts SET_OR_FILE"
    ),
    "negative seed": Case(
        ["shapes", "render", "--prompt", "a red circle", "--seed", "-1"], "argument --seed: must be >= 0, got -1"
    ),
    "count that is not a number": Case(
        ["shapes", "render", "--prompt", "a red circle", "--n", "two"], "argument --n: expected a whole number"
    ),
    "no command": Case([], "the following arguments are required: COMMAND", out=None),
    "score without images": Case(
        ["score", "--prompt", "a red circle"], "the following arguments are required: IMAGE", out=None
    ),
    "list of a registry that does not exist": Case(["list", "models"], "invalid choice: 'models'", out=None),
    "unknown preset without a near name": Case(
        ["train", "--preset", "nope"], "unknown preset 'nope' (known: shapes, tiny)"
    ),
    "mistyped dtype": Case(
        [*TRAIN, "--dtype", "float23"],
        "unknown dtype 'float23' (did you mean 'float32'? known: float32, float16, bfloat16)",
    ),
    "unknown log-probability reduction": Case(
        [*TRAIN, "logprob=median"], "config: logprob must be 'sum' or 'mean', got 'median'"
    ),
    "sample with negative guidance": Case([*SAMPLE, "--guidance", "-2"], "guidance must be >= 0, got -2.0"),
    "eval step list that is not numbers": Case(
        ["eval", "--policy", "shapes-steps4", "--steps", "4,x"],
        "--steps: expected comma-separated whole numbers, got '4,x'",
    ),
    "train-base folder that holds a run": Case(
        ["shapes", "train-base", "--optimizer-steps", "1"],
        "out: already holds a run; use --resume or a new folder",
        files(**{"out__config.json": "{}\n"}),
    ),
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-iteration run: checkpoint/, policy/ and config.yaml to spoil."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    train_module.train(resolve("tiny", overrides=["eval_prompts=", "iterations=1"]), run, quiet=True)
    return run


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def fill(text: str, w: Path, server: str = "") -> str:
    return text.replace("{w}", str(w)).replace("{server}", server)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_gets_one_line_exit_2_and_leaves_nothing_half_written(
    name: str, tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    case = CASES[name]
    w = tmp_path
    if case.setup is not None:
        case.setup(w, tiny_run)
    if case.patch is not None:
        case.patch(monkeypatch)
    with ExitStack() as stack:
        url = ""
        if case.server is not None:
            url = stack.enter_context(serving(make_server(get_reward("shapes"), **case.server)))
        args = [fill(a, w, url) for a in case.args] + (["--out", fill(case.out, w)] if case.out else [])
        before = snapshot(w)
        capsys.readouterr()

        code = main(args)
        printed, err = capsys.readouterr()

    assert code == 2, err
    if case.left is None:
        assert printed.startswith(case.stdout) and bool(printed) == bool(case.stdout), printed
    assert "Traceback" not in err
    # The progress bar redraws with carriage returns; everything else on stderr is the one line.
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "noiseppo: error: " in line]
    assert len(errors) == 1 and errors[0].startswith("noiseppo: error: "), err
    bars = ("noise ppo", "held-out pass")  # training's bar and a held-out pass's own
    assert all(line.startswith(bars) for line in lines if "noiseppo: error: " not in line), err
    assert case.message in errors[0], errors[0]
    assert not (w / MARKER).exists() and not list(w.rglob(MARKER)), "a pickle was run"

    if case.left is None:
        assert snapshot(w) == before, "a refused command must leave every file as it was"
        return
    run = w / "out"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert not [p.name for p in w.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    tensors, meta = load_state(run / "checkpoint")
    assert meta["iteration"] == case.left and any(k.startswith("policy.") for k in tensors)
    load_policy(run)
    if case.resumes:
        monkeypatch.undo()
        assert main(["train", "--resume", str(run)]) == 0, capsys.readouterr().err
        assert load_state(run / "checkpoint")[1]["iteration"] == 2


def test_the_pickles_would_run_if_anything_unpickled_them(tmp_path: Path) -> None:
    """The marker check above means something: unpickling either file creates the marker."""
    torch_pickle(tmp_path / "a.pt")  # the same bytes the cases rename (torch.load reads .safetensors its own way)
    torch.load(tmp_path / "a.pt", weights_only=False)
    assert (tmp_path / MARKER).is_dir()
    (tmp_path / MARKER).rmdir()
    plain_pickle(tmp_path / "config.json")
    pickle.loads((tmp_path / "config.json").read_bytes())
    assert (tmp_path / MARKER).is_dir()


def test_the_source_never_unpickles() -> None:
    """No pickle module, no torch.load, and no from_pretrained (diffusers' and transformers'
    fall back to torch.load on .bin files): every load goes through noiseppo.storage.safe_load. The
    exceptions load users' models: ``DiffusionPipeline`` and ``CLIPModel`` with a literal
    ``use_safetensors=True`` (which refuses .bin weights) and no ``**kwargs`` that could undo it,
    and ``CLIPProcessor`` (tokenizer and image-processor files: JSON and text, no weights)."""
    found = []
    for path in sorted((Path(__file__).parents[1] / "src" / "noiseppo").rglob("*.py")):
        tree = ast.parse(path.read_text())
        allowed = {
            id(call.func)
            for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and all(k.arg is not None for k in call.keywords)
            and (
                ast.unparse(call.func) == "CLIPProcessor.from_pretrained"
                or ast.unparse(call.func) in ("DiffusionPipeline.from_pretrained", "CLIPModel.from_pretrained")
                and any(k.arg == "use_safetensors" and ast.unparse(k.value) == "True" for k in call.keywords)
            )
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                found += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in PICKLERS]
            elif isinstance(node, ast.Attribute) and node.attr in ("load", "from_pretrained"):
                owner = node.value.id if isinstance(node.value, ast.Name) else ast.unparse(node.value)
                pretrained = node.attr == "from_pretrained" and id(node) not in allowed
                if (owner, node.attr) == ("torch", "load") or (
                    pretrained and owner != "ShapesBackend"  # ours reads safetensors
                ):
                    found.append(f"{path.name}:{node.lineno}: {owner}.{node.attr}")
    assert found == []


def table_rows() -> dict[str, list[str]]:
    """The table of docs/hostile_inputs.md (its section "The table"): case → its cells."""
    rows = {}
    for line in DOC.read_text().split("\n## The table\n", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 4 and not set(cells[0]) <= set("- ") and cells[0] != "case":
            rows[cells[0]] = cells
    return rows


def test_the_table_documents_exactly_these_cases() -> None:
    rows = table_rows()
    assert sorted(rows) == sorted(CASES)
    for name, case in CASES.items():
        message = re.findall(r"`([^`]*)`", rows[name][2])
        assert message and case.message in message[0], (name, rows[name][2])
        assert rows[name][3] == "2", name
