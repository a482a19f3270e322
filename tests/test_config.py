"""What a config value means: presets state only what differs, guidance None is the backend's
default (0 is a literal 0), and a prompt's group is its conditioning's text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from noiseppo.configs.paths import given_comment, local_reward, with_absolute_paths
from noiseppo.configs.presets import PRESETS_DIR, presets, resolve
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.storage.local_paths import local_model, looks_like_path
from noiseppo.training.trainer import Trainer


@pytest.mark.parametrize("name", sorted(presets()))
def test_a_preset_states_only_what_differs_from_the_defaults(name: str) -> None:
    stated = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}
    defaults = dataclasses.asdict(TrainConfig())
    repeated = {key: value for key, value in stated.items() if defaults[key] == value}
    assert not repeated, f"{name}.yaml repeats TrainConfig's defaults: {repeated}"
    resolved = dataclasses.asdict(resolve(name))
    assert {k: v for k, v in resolved.items() if v != defaults[k]} == stated


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [([], None), (["guidance=none"], None), (["guidance=null"], None), (["guidance=0"], 0.0), (["guidance=1.5"], 1.5)],
)
def test_guidance_none_is_the_backends_default_and_zero_is_zero(overrides: list[str], expected) -> None:
    assert resolve("tiny", overrides=overrides).guidance == expected


def test_a_yaml_null_guidance_is_the_backends_default(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("guidance: null\n")
    assert resolve("tiny", config_file=str(tmp_path / "c.yaml"), overrides=[]).guidance is None


def test_the_trainer_resolves_none_and_keeps_a_literal_zero() -> None:
    default = Trainer(resolve("tiny", overrides=["eval_prompts="]))
    assert default.guidance == default.backend.default_guidance == 1.0
    assert Trainer(resolve("tiny", overrides=["eval_prompts=", "guidance=0"])).guidance == 0.0


def test_two_spellings_of_one_prompt_are_one_group(tmp_path: Path) -> None:
    """The Shapes backend encodes "a  red circle" as "a red circle": the policy sees one prompt,
    so its samples share one group (and one advantage tracker entry), whichever way it was spelled."""
    (tmp_path / "p.txt").write_text("a red circle\na  red circle\n")
    trainer = Trainer(resolve("tiny", overrides=["eval_prompts=", f"prompts={tmp_path / 'p.txt'}"]))
    grouped: list[list[str]] = []
    inner = trainer.stats.advantages

    def recording(prompts, rewards):
        grouped.append(list(prompts))
        return inner(prompts, rewards)

    trainer.stats.advantages = recording  # type: ignore[method-assign]
    trainer.step()
    assert grouped == [["a red circle"] * 8]


def test_another_backend_without_eval_prompts_has_no_held_out_pass_and_keeps_the_users_own(tmp_path: Path) -> None:
    # The presets' held-out sets are Shapes prompts: they never go through another model by default.
    assert resolve("shapes").eval_prompts == "shapes-test"
    assert resolve("shapes", flags={"backend": "diffusers"}).eval_prompts == ""
    assert resolve("tiny", overrides=["backend=sd3"]).eval_prompts == ""
    (tmp_path / "c.yaml").write_text(f"backend: flux\neval_prompts: {tmp_path / 'mine.txt'}\n")
    assert resolve("shapes", config_file=str(tmp_path / "c.yaml")).eval_prompts == str(tmp_path / "mine.txt")
    assert resolve("shapes", flags={"backend": "diffusers"}, overrides=["eval_prompts=my.txt"]).eval_prompts == "my.txt"


def test_local_paths_become_absolute_and_names_stay_as_they_are(tmp_path: Path, monkeypatch) -> None:
    """What ``config.yaml`` records: local files by their absolute paths, everything else as typed."""
    (tmp_path / "models" / "sd").mkdir(parents=True)
    (tmp_path / "heads").mkdir()
    monkeypatch.chdir(tmp_path)
    assert local_model("models/sd") == f"{tmp_path}/models/sd" and local_model("") == ""
    assert local_model("stabilityai/sd-turbo") == "stabilityai/sd-turbo"  # a hub id: no folder 'stabilityai/'
    for typo in ("./my-sd-trubo", "models/sd-trubo", "/no/such/folder", "~/no-such-model-folder"):
        assert looks_like_path(typo)
        with pytest.raises(UserError, match=f"^no such model folder: {typo}"):
            local_model(typo)
    assert not looks_like_path("my-sd-trubo")  # a bare name may be a hub id
    assert local_reward("r.py:score") == f"{tmp_path}/r.py:score"
    assert local_reward("rewards:score") == "rewards:score"  # a module: imported as Python would
    assert local_reward("0.5*r.py:score+shapes") == f"0.5*{tmp_path}/r.py:score+shapes"
    assert local_reward("clip_score@heads") == f"clip_score@{tmp_path}/heads"
    assert local_reward("clip_score@openai/clip-vit-base-patch32") == "clip_score@openai/clip-vit-base-patch32"
    assert local_reward("http://127.0.0.1:9/score") == "http://127.0.0.1:9/score"
    config = with_absolute_paths(TrainConfig(prompts="p.txt", eval_prompts="shapes-test", reward="r.py:score"))
    assert (config.prompts, config.eval_prompts) == (f"{tmp_path}/p.txt", "shapes-test")
    assert given_comment(TrainConfig(prompts="p.txt", reward="r.py:score"), config) == (
        f"# given as reward=r.py:score, prompts=p.txt in {tmp_path}\n"
    )
