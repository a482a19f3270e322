"""``noiseppo compare`` on another model than Shapes (issue 34): a tiny random SD pipeline, a reward
function from a file and free-text prompts, every method through the real CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from noiseppo.backends import get_backend
from noiseppo.backends.base import resolve_guidance
from noiseppo.comparison.config import CompareConfig, compare_config
from noiseppo.comparison.methods import KINDS
from noiseppo.comparison.runner import Comparison
from noiseppo.dataclass_args import field_docs
from noiseppo.sampling.seeds import sample_seed, standard_noise
from tiny_models import tiny_sd_pipeline

HELD_OUT = ["a red cat", "two dogs"]  # free text, within the tiny CLIP's 16 tokens
REWARD = "def brightness(images, prompts):\n    return images.mean(dim=(1, 2, 3)).tolist()\n"


def test_each_kind_of_method_names_a_runner() -> None:
    assert all(callable(getattr(Comparison, kind.runner, None)) for kind in KINDS.values())


def test_every_compare_setting_has_a_docstring_and_an_override_sets_its_field() -> None:
    assert set(field_docs(CompareConfig)) == {f.name for f in dataclasses.fields(CompareConfig)}
    config = compare_config({"methods": "standard", "seeds": None}, ["eval_seeds=3", "eval_prompts=a.txt", "lr=0.1"])
    assert (config.seeds, config.prompts, config.overrides) == (3, "a.txt", ("lr=0.1",))


def test_compare_on_a_tiny_sd_pipeline_with_a_function_reward_and_free_text_prompts(noiseppo, tmp_path: Path) -> None:
    sd = tiny_sd_pipeline(tmp_path / "sd")
    (tmp_path / "held_out.txt").write_text("\n".join(HELD_OUT) + "\n")
    (tmp_path / "train.txt").write_text("a blue car\na green house\na dog\n")
    (tmp_path / "my_reward.py").write_text(REWARD)
    reward = f"{tmp_path / 'my_reward.py'}:brightness"
    common = ["--backend", "diffusers", "--model", sd, "--reward", reward, "--steps", "2", "--seeds", "2"]
    common += ["--preset", "tiny", "--bootstrap", "100", "--threads", "1"]
    out = tmp_path / "cmp"
    methods = "standard,best-of-1,best-of-2,golden-top-2,noise-ppo,ddpo@1"
    args = ["compare", "--methods", methods, *common, "--golden-noises", "2", "--out", out]
    done = noiseppo.in_process(*args, f"eval_prompts={tmp_path / 'held_out.txt'}", f"prompts={tmp_path / 'train.txt'}")
    assert done.returncode == 0, done.stderr
    body = json.loads((out / "compare.json").read_text())
    assert body["metric"] == "reward" and body["reward"] == reward and body["pairs"] == 4
    assert (body["backend"], body["model"]) == ("diffusers", str(sd))
    assert [r["method"] for r in body["rows"]] == methods.split(",")
    rows = {r["method"]: r for r in body["rows"]}
    assert all(r["n"] == 4 for r in rows.values())

    # The standard row recomputed through the public API from the seed rule, at the backend's guidance.
    backend = get_backend("diffusers", str(sd))
    texts = [p for p in HELD_OUT for _ in range(2)]
    noise = standard_noise(backend.latent_shape, [sample_seed(0, i, j) for i in range(2) for j in range(2)])
    with torch.no_grad():
        images = backend.generate(noise, backend.encode(texts), 2, resolve_guidance(backend, None))
    assert rows["standard"]["reward"] == pytest.approx(images.mean(dim=(1, 2, 3)).mean().item(), rel=1e-5)
    assert rows["standard"]["delta"] == 0
    # best-of-1 is standard sampling, also after DDPO's LoRA was loaded into the pipeline and removed.
    assert rows["best-of-1"]["reward"] == rows["standard"]["reward"]
    assert rows["best-of-2"]["reward"] >= rows["standard"]["reward"] and rows["best-of-2"]["oracle_at_inference"]
    assert rows["golden-top-2"]["renders_train"] == 1 * 2  # every 8th of 3 training prompts x 2 noises
    assert rows["noise-ppo"]["renders_train"] == 2 * 2 * 4 and "training prompts" in rows["noise-ppo"]["note"]
    assert rows["noise-ppo"]["other_pairs"] == 4 and "own_minus_mirror" not in rows["noise-ppo"]  # no relations
    assert rows["ddpo@1"]["weights_change"] and rows["ddpo@1"]["renders_train"] == 8
    assert (out / "ddpo" / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert body["curves"]["noise-ppo"][-1]["iteration"] == 2 and "eval_reward" in body["curves"]["noise-ppo"][-1]
    assert "held-out reward at 2 steps" in done.stdout and "| yes (LoRA) |" in done.stdout

    # policy:RUN, the run trained above, through --prompts: the same images, the same figures.
    again = tmp_path / "again"
    run = out / "noise-ppo"
    args = ["compare", "--methods", f"standard,policy:{run}", *common, "--prompts", tmp_path / "held_out.txt"]
    done = noiseppo.in_process(*args, "--out", again)
    assert done.returncode == 0, done.stderr
    saved = json.loads((again / "compare.json").read_text())["rows"][1]
    for key in ("reward", "delta", "own_minus_other", "reward_ci95_low", "reward_ci95_high"):
        assert saved[key] == rows["noise-ppo"][key], key


SD3_DDPO = ["--methods", "standard,ddpo", "--backend", "sd3", "--model", "m", "--prompts", "animals"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*SD3_DDPO, "--reward", "jpeg_compressibility"],
         "--methods: 'ddpo' runs on --backend shapes and diffusers, not sd3: "),
        (["--methods", "standard", "--backend", "flux", "--model", "m", "--prompts", "animals"],
         "--backend flux: give the reward, --reward NAME (or module:function)"),
        (["--methods", "standard", "eval_seeds=2", "--seeds", "3"],
         "'eval_seeds=2': give the seeds once, as --seeds or as eval_seeds="),
    ],
)  # fmt: skip
def test_compare_mistakes_are_answered_before_torch_loads(args: list[str], message: str, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom noiseppo.cli import main\n"
        f"code = main(['compare', *{args!r}, '--out', 'out'])\n"
        "print('TORCH', code, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.stdout.splitlines()[-1] == "TORCH 2 False", (result.stdout[-500:], result.stderr[-500:])
    assert result.stderr.startswith(f"noiseppo: error: {message}") and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
