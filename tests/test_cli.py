"""The ``noiseppo`` command line: the real console script in subprocesses, the way a user runs it.

Each start-up of the console script imports torch and more (2-4 s of CPU), so the commands
whose process boundary matters (the demo path, determinism across runs, exit status 2 from the
entry point) run as subprocesses, concurrently, in one module fixture; the other bad-input
cases call the same ``noiseppo.cli.main`` in this process. Each test checks one command's result.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noiseppo import cli
from noiseppo.seeds import sample_seed
from noiseppo.shapes import splits
from noiseppo.shapes.render import render, render_scene

TEST_PROMPTS = splits.test_prompts()
IMAGES = ["circle.png", "extra.png", "blank.png"]  # a red circle; a red circle and a blue square; white


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main_in_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``noiseppo ARGS`` through ``cli.main`` in this process, captured like a subprocess."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return subprocess.CompletedProcess(["noiseppo", *argv], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Input files for the commands below."""
    work = tmp_path_factory.mktemp("cli")
    render("a red circle", 1).save(work / "circle.png")
    render("a red circle and a blue square", 0).save(work / "extra.png")
    Image.new("RGB", (32, 32), (255, 255, 255)).save(work / "blank.png")
    Image.new("RGB", (48, 64), (255, 255, 255)).save(work / "big.png")
    (work / "notes.png").write_text("this is not a picture\n")
    (work / "first3.txt").write_text("# the first three prompts of shapes-test\n" + "\n".join(TEST_PROMPTS[:3]) + "\n")
    (work / "bad.jsonl").write_text('{"prompt": "a red circle"}\n{"prompt": "a red circle and a red circle"}\n')
    (work / "existing").mkdir()
    (work / "existing" / "keep.txt").write_text("mine\n")
    (work / "empty").mkdir()
    return work


@pytest.fixture(scope="module")
def runs(noiseppo, work) -> dict[str, subprocess.CompletedProcess[str]]:
    w, render_cmd = work, ["shapes", "render"]
    subprocesses = {
        "render": [*render_cmd, "--prompts", "shapes-test", "--n", "1", "--seed", "0", "--out", w / "test-set"],
        "render_again": [*render_cmd, "--prompts", w / "first3.txt", "--n", "2", "--out", w / "empty"],
        "bad_prompt": ["score", "--prompt", "a red hexagon", w / "circle.png"],
    }
    in_process = {
        "missing_image": ["score", "--prompt", "a red circle", w / "circle.png", w / "nowhere.png"],
        "score": ["score", "--reward", "shapes", "--prompt", "a red circle", *(w / f for f in IMAGES)],
        "list_prompts": ["list", "prompts"],
        "list_rewards": ["list", "rewards"],
        # Bad input: each must fail with one line on stderr and exit 2.
        "prompt_count": ["score", "--prompt", "a red circle", "--prompt", "a blue square", *[w / "circle.png"] * 3],
        "not_an_image": ["score", "--prompt", "a red circle", w / "notes.png"],
        "wrong_size": ["score", "--prompt", "a red circle", w / "circle.png", w / "big.png"],
        "unknown_reward": ["score", "--reward", "clip", "--prompt", "a red circle", w / "circle.png"],
        "render_nonempty": [*render_cmd, "--prompt", "a red circle", "--out", w / "existing"],
        "render_bad_prompt": [*render_cmd, "--prompt", "a blue square", "--prompt", "two red", "--out", w / "new"],
        "render_bad_file": [*render_cmd, "--prompts", w / "bad.jsonl", "--out", w / "new"],
    }
    return noiseppo.many(subprocesses, then=lambda: {k: main_in_process(*v) for k, v in in_process.items()})


def assert_ok(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def assert_user_error(run: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr that starts 'noiseppo: error:', no traceback."""
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("noiseppo: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


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


def test_prompt_count_must_be_one_or_one_per_image(runs):
    assert_user_error(runs["prompt_count"], "give one --prompt for all images or one per image; got 2 for 3 images")


def test_prompt_outside_the_grammar_names_the_word(runs):
    line = assert_user_error(runs["bad_prompt"])
    assert line == (
        "noiseppo: error: prompt 'a red hexagon': word 3 'hexagon' is not a shape ('circle', 'square' or 'triangle')"
    )


def test_missing_image(runs, work):
    assert_user_error(runs["missing_image"], f"{work / 'nowhere.png'}: image not found")


def test_unreadable_image(runs, work):
    assert_user_error(runs["not_an_image"], f"{work / 'notes.png'}: cannot read image")


def test_image_of_another_size_is_refused(runs, work):
    line = assert_user_error(runs["wrong_size"])
    assert (
        line == f"noiseppo: error: {work / 'big.png'}: image is 48x64, reward 'shapes' reads 32x32 (it never resizes)"
    )


def test_unknown_reward(runs):
    assert_user_error(runs["unknown_reward"], "unknown reward 'clip' (known: shapes, shapes-correct, ")


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
        assert scene["seed"] == sample_seed(0, i, 0)  # the seed rule of noiseppo.seeds
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


def test_render_refuses_a_non_empty_folder_and_leaves_it_untouched(runs, work):
    before = {"keep.txt": b"mine\n"}
    assert_user_error(runs["render_nonempty"], f"{work / 'existing'}: output path exists and is not empty")
    assert snapshot(work / "existing") == before
    assert not list(work.glob(".existing.partial-*"))


def test_render_with_a_bad_prompt_creates_nothing(runs, work):
    # Both runs aim at work/new; neither may create it, nor leave a temporary folder beside it.
    assert_user_error(runs["render_bad_prompt"], "prompt 'two red': ends after word 2, expected a plural shape")
    assert_user_error(
        runs["render_bad_file"], "prompt 'a red circle and a red circle': word 7 'circle' repeats 'red circle'"
    )
    assert not (work / "new").exists()
    assert not list(work.glob(".new*"))


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
        "aesthetic", "imagereward", "hpsv2",
    ]  # fmt: skip


# --------------------------------------------------------------------------- more usage errors, in process


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["score", "--prompt", "a red circle"], "the following arguments are required: IMAGE"),
        (["shapes", "render", "--out", "x"], "give either --prompt (repeatable) or --prompts SET_OR_FILE"),
        (["shapes", "render", "--prompt", "a red circle", "--seed", "-1", "--out", "x"], "must be >= 0, got -1"),
        (["shapes", "render", "--prompt", "a red circle", "--n", "two", "--out", "x"], "expected a whole number"),
        (["shapes", "render", "--prompts", "shapes-dev", "--out", "x"], "unknown prompt set 'shapes-dev'"),
        (["list", "models"], "invalid choice: 'models'"),
        (
            ["shapes", "render", "--prompt", "a red circle", "--n", "0", "--out", "x"],
            "argument --n: must be >= 1, got 0",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("noiseppo: error: ")
    assert fragment in err
    assert list(tmp_path.iterdir()) == []


def test_render_into_a_missing_parent_folder(capsys, tmp_path):
    assert cli.main(["shapes", "render", "--prompt", "a red circle", "--out", str(tmp_path / "no" / "out")]) == 2
    assert (
        capsys.readouterr().err == f"noiseppo: error: {tmp_path / 'no'}: parent folder of the output does not exist\n"
    )


def test_the_documented_score_example(tmp_path, monkeypatch):
    doc = (Path(__file__).parents[1] / "docs" / "shapes.md").read_text()
    example = re.search(r'```json\n(\{"image": "extra.png".*?)```', doc, re.S)
    assert example is not None
    monkeypatch.chdir(tmp_path)
    render("a red circle and a blue square", 0).save("extra.png")
    run = main_in_process("score", "--prompt", "a red circle", "extra.png")
    assert_ok(run)
    assert rows(run) == [json.loads(example.group(1))]


def test_a_transparent_background_is_not_an_object(tmp_path):
    pixels = np.asarray(render("a red circle", 1).convert("RGBA")).copy()
    pixels[(pixels[..., :3] == 255).all(-1)] = (0, 0, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "rgba.png")
    run = main_in_process("score", "--prompt", "a red circle", tmp_path / "rgba.png")
    # Either composited on white (and correct) or refused as a user error; never a phantom green object.
    assert run.returncode == 2 or rows(run)[0]["correct"] == 1, run.stdout


def test_a_prompt_with_a_newline_still_gets_a_one_line_error(capsys, tmp_path):
    render("a red circle", 0).save(tmp_path / "a.png")
    assert cli.main(["score", "--prompt", "a red\nhexagon", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
