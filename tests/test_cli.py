"""The ``noiseppo`` command line: ``score``, ``shapes render`` and ``list``, the way a user runs them.

Each start-up of the console script imports torch and more (2-4 s of CPU), so only the commands
whose process boundary matters (the demo path, determinism across runs) run as subprocesses,
concurrently, in one module fixture; the others go through ``noiseppo.in_process``. Each test
checks one command's result. Bad input is tested in one place: tests/test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noiseppo.sampling.seeds import sample_seed
from noiseppo.shapes import splits
from noiseppo.shapes.render import render, render_scene

TEST_PROMPTS = splits.test_prompts()
IMAGES = ["circle.png", "extra.png", "blank.png"]  # a red circle; a red circle and a blue square; white


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Input files for the commands below."""
    work = tmp_path_factory.mktemp("cli")
    render("a red circle", 1).save(work / "circle.png")
    render("a red circle and a blue square", 0).save(work / "extra.png")
    Image.new("RGB", (32, 32), (255, 255, 255)).save(work / "blank.png")
    (work / "first3.txt").write_text("# the first three prompts of shapes-test\n" + "\n".join(TEST_PROMPTS[:3]) + "\n")
    (work / "empty").mkdir()
    return work


@pytest.fixture(scope="module")
def runs(noiseppo, work) -> dict[str, subprocess.CompletedProcess[str]]:
    w, render_cmd = work, ["shapes", "render"]
    subprocesses = {
        "render": [*render_cmd, "--prompts", "shapes-test", "--n", "1", "--seed", "0", "--out", w / "test-set"],
        "render_again": [*render_cmd, "--prompts", w / "first3.txt", "--n", "2", "--out", w / "empty"],
    }
    in_process = {
        "score": ["score", "--reward", "shapes", "--prompt", "a red circle", *(w / f for f in IMAGES)],
        "list_prompts": ["list", "prompts"],
        "list_rewards": ["list", "rewards"],
    }
    return noiseppo.many(subprocesses, then=lambda: {k: noiseppo.in_process(*v) for k, v in in_process.items()})


def assert_ok(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def rows(run: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines()]


# --------------------------------------------------------------------------- score


def test_score_prints_one_json_object_per_image(runs, work):
    run = runs["score"]
    assert_ok(run)
    out = rows(run)
    assert [r["image"] for r in out] == [str(work / f) for f in IMAGES]
    assert all(set(r) == {"image", "prompt", "correct", "partial", "constraints", "objects"} for r in out)
    assert all(r["prompt"] == "a red circle" for r in out)
    assert [r["correct"] for r in out] == [1, 0, 0]
    assert [r["partial"] for r in out] == [1.0, 0.5, 0.0]
    assert out[1]["constraints"] == {"count: red circle = 1": True, "total objects = 1": False}
    assert sorted(o["colour"] + " " + o["shape"] for o in out[1]["objects"]) == ["blue square", "red circle"]
    assert out[2]["objects"] == []


def test_rendered_test_set_scores_correct_with_one_prompt_per_image(runs, work, noiseppo):
    assert_ok(runs["render"])
    scenes = [json.loads(line) for line in (work / "test-set" / "scenes.jsonl").read_text().splitlines()]
    args = []
    for scene in scenes:
        args += ["--prompt", scene["prompt"]]
    run = noiseppo("score", *args, *(scene["file"] for scene in scenes), cwd=work / "test-set")
    assert_ok(run)
    out = rows(run)
    assert len(out) == 148
    assert [r["image"] for r in out] == [s["file"] for s in scenes]
    assert [r["prompt"] for r in out] == TEST_PROMPTS
    assert all(r["correct"] == 1 and r["partial"] == 1.0 and all(r["constraints"].values()) for r in out)
    for r, scene in zip(out, scenes, strict=True):
        assert sorted(o["colour"] + o["shape"] for o in r["objects"]) == sorted(
            o["colour"] + o["shape"] for o in scene["objects"]
        )


# --------------------------------------------------------------------------- shapes render


def test_render_writes_images_and_scenes(runs, work):
    run = runs["render"]
    assert_ok(run)
    out = work / "test-set"
    assert run.stdout == f"wrote 148 images and scenes.jsonl to {out}\n"
    assert sorted(p.name for p in out.iterdir()) == ["images", "scenes.jsonl"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:04d}.png" for i in range(148)]
    assert not list(work.glob(".test-set.partial-*"))  # the temporary folder was renamed, not left behind
    scenes = [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in scenes] == TEST_PROMPTS
    for i, scene in enumerate(scenes):
        assert set(scene) == {"file", "prompt", "seed", "objects"}
        assert scene["file"] == f"images/{i:04d}.png"
        assert scene["seed"] == sample_seed(0, i, 0)  # the seed rule of noiseppo.sampling.seeds
        with Image.open(out / scene["file"]) as im:
            assert (im.mode, im.size) == ("RGB", (32, 32))
            pixels = np.asarray(im)
        image, objects = render_scene(scene["prompt"], scene["seed"])
        assert pixels.tobytes() == image.tobytes()  # PNG is lossless: exactly the renderer's image
        assert scene["objects"] == [{"colour": o.colour, "shape": o.shape, "box": list(o.box)} for o in objects]


def test_same_seed_gives_byte_identical_images_across_runs(runs, work):
    # A second run with the first three prompts and the same (default) --seed 0, two scenes each, into an
    # existing empty folder: scene j=0 of prompt i is the same file as in the full run.
    assert_ok(runs["render_again"])
    again = work / "empty"
    first = work / "test-set"
    scenes = [json.loads(line) for line in (again / "scenes.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in scenes] == [p for p in TEST_PROMPTS[:3] for _ in range(2)]
    assert [s["seed"] for s in scenes] == [sample_seed(0, i, j) for i in range(3) for j in range(2)]
    for i in range(3):
        same = (again / "images" / f"{2 * i:04d}.png").read_bytes()
        assert same == (first / "images" / f"{i:04d}.png").read_bytes()
        other = (again / "images" / f"{2 * i + 1:04d}.png").read_bytes()
        assert other != same


def test_another_seed_gives_other_images():
    seeds = [sample_seed(s, 0, 0) for s in range(50)] + [sample_seed(0, i, j) for i in range(50) for j in range(1, 3)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    images = {render(TEST_PROMPTS[0], sample_seed(s, 0, 0)).tobytes() for s in range(30)}
    assert len(images) >= 25  # one green square has ~1,700 layouts


# --------------------------------------------------------------------------- list


def test_list_prompts(runs):
    assert_ok(runs["list_prompts"])
    lines = runs["list_prompts"].stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "shapes-train",
        "shapes-test",
        "animals",
        "counting",
        "colour-binding",
    ]
    assert "548 prompts" in lines[0] and "148 held-out prompts" in lines[1]


def test_list_rewards(runs):
    assert_ok(runs["list_rewards"])
    lines = runs["list_rewards"].stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "shapes", "shapes-correct", "jpeg_compressibility", "jpeg_incompressibility", "clip_score", "pickscore",
        "aesthetic", "imagereward", "hpsv2", "module:function", "http://HOST:PORT/PATH", "0.5*A+1.0*B",
    ]  # fmt: skip  # the registered rewards, then the other forms a reward takes


def test_the_documented_score_example(noiseppo, tmp_path, monkeypatch):
    doc = (Path(__file__).parents[1] / "docs" / "shapes.md").read_text()
    example = re.search(r'```json\n(\{"image": "extra.png".*?)```', doc, re.S)
    assert example is not None
    monkeypatch.chdir(tmp_path)
    render("a red circle and a blue square", 0).save("extra.png")
    run = noiseppo.in_process("score", "--prompt", "a red circle", "extra.png")
    assert_ok(run)
    assert rows(run) == [json.loads(example.group(1))]


def test_a_transparent_background_is_not_an_object(noiseppo, tmp_path):
    pixels = np.asarray(render("a red circle", 1).convert("RGBA")).copy()
    pixels[(pixels[..., :3] == 255).all(-1)] = (0, 0, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "rgba.png")
    run = noiseppo.in_process("score", "--prompt", "a red circle", tmp_path / "rgba.png")
    # Composited on white: the red circle alone, never a phantom object where the pixels are transparent.
    assert_ok(run)
    (row,) = rows(run)
    assert row["correct"] == 1 and [(o["colour"], o["shape"]) for o in row["objects"]] == [("red", "circle")]


# -- settings anywhere on the line (issue 34); their refusals are rows of tests/test_hostile_inputs.py
def test_key_value_settings_count_wherever_they_stand():
    from noiseppo.cli import _parse, build_parser

    parser = build_parser()
    args = _parse(parser, ["train", "lr=1e-4", "--reward", "shapes", "render_batch=8", "--out", "r", "lr=2e-4"])
    assert (args.overrides, args.reward, args.out) == (["lr=1e-4", "render_batch=8", "lr=2e-4"], "shapes", "r")
    # An option's value is never a setting, nor is anything after --.
    args = _parse(parser, ["ddpo", "--model", "a=b", "steps=2", "--reward", "jpeg_compressibility", "--out", "r"])
    assert (args.model, args.overrides, args.reward) == ("a=b", ["steps=2"], "jpeg_compressibility")
    # A command without config keys reads KEY=VALUE as its flag, where it stands: the last one counts.
    args = _parse(parser, ["eval", "reward=shapes-correct", "--policy", "p", "seeds=2", "--out", "o", "--seeds", "3"])
    assert (args.reward, args.seeds, args.policy) == ("shapes-correct", 3, "p")
    assert _parse(parser, ["eval", "--seeds", "3", "--policy", "p", "seeds=2", "--out", "o"]).seeds == 2
    args = _parse(parser, ["shapes", "render", "--prompt", "n=5", "n=2", "--out", "o"])
    assert (args.prompt, args.n) == (["n=5"], 2)


def test_help_still_exits_0_and_a_usage_mistake_2(noiseppo):
    from noiseppo.cli import main

    with pytest.raises(SystemExit) as shown:
        main(["train", "iterations=3", "--help"])
    assert shown.value.code == 0
    assert main(["train", "--preset", "tiny", "--no-such-flag", "iterations=3"]) == 2


def test_debug_shows_the_traceback_before_the_one_line(tmp_path, monkeypatch, capsys):
    """--debug anywhere on the line, or NOISEPPO_DEBUG=1: the reward's own traceback, then the same line
    and exit status as without it."""
    from noiseppo.cli import main
    from noiseppo.errors import DEBUG_ENV

    (tmp_path / "broken_reward.py").write_text("def score(images, prompts):\n    return 1 / 0\n")
    render("a red circle", 0).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEBUG_ENV, "0")  # undone after the test, also where --debug set it
    args = ["score", "--reward", "broken_reward:score", "--prompt", "a red circle", "a.png"]
    try:
        errors = {}
        for how, extra in {"plain": [], "flag": ["--debug"], "env": []}.items():
            if how == "env":
                monkeypatch.setenv(DEBUG_ENV, "1")
            assert main([*args[:2], *extra, *args[2:]]) == 2
            errors[how] = capsys.readouterr().err
            monkeypatch.setenv(DEBUG_ENV, "0")
    finally:
        sys.modules.pop("broken_reward", None)
    line = "noiseppo: error: the reward raised ZeroDivisionError: division by zero\n"
    assert errors["plain"] == line
    for how in ("flag", "env"):
        assert errors[how].startswith("Traceback (most recent call last):") and errors[how].endswith(line)
        assert 'broken_reward.py", line 2, in score' in errors[how]


def test_set_up_fills_in_the_policys_settings_and_warns_where_they_differ(capsys):
    """The set-up sample, eval, golden and search share: the policy's training settings fill the flags
    left out, the reward defaults to the policy's, and other step counts than its training's warn."""
    from noiseppo.cli import _parse, build_parser
    from noiseppo.cli.setup import set_up

    parser = build_parser()
    args = _parse(parser, ["sample", "--policy", "shapes-steps2", "--prompt", "a red circle", "--out", "o"])
    setup = set_up(args, ["a red circle"], warn=True)
    assert (args.backend, args.scheduler, args.steps, setup.steps) == ("shapes", "default", 2, [2])
    assert (setup.backend.name, setup.guidance, setup.trained["steps"], setup.reward) == ("shapes", 1.0, 2, None)
    assert setup.policy is not None and capsys.readouterr().err == ""

    args = _parse(parser, ["eval", "--policy", "shapes-steps2", "--out", "o"])
    args.steps = [2, 8]  # as eval parses --steps 2,8
    setup = set_up(args, ["a red circle"], reward=True, warn=True)
    assert (args.reward, setup.steps, type(setup.reward).__name__) == ("shapes", [2, 8], "ShapesReward")
    assert "noiseppo: warning: the policy runs at steps 8 (trained at 2)" in capsys.readouterr().err

    args = _parse(parser, ["search", "--prompt", "a red circle", "--reward", "shapes-correct", "--out", "o"])
    setup = set_up(args, ["a red circle"], reward=True)  # no --policy: the default config's backend
    assert (setup.policy, setup.trained, args.backend, args.model, args.scheduler) == (
        None,
        {},
        "shapes",
        None,
        "default",
    )
