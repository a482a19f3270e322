"""Rewards beyond Shapes: JPEG size, a user's module:function, weighted sums, HTTP, CLIP score,
PickScore, the LAION aesthetic head, and ImageReward and HPSv2 behind extras."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import time
import types
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noiseppo.errors import UserError
from noiseppo.rewards import get_reward
from noiseppo.rewards.extras import INSTALL
from noiseppo.rewards.http import HttpReward
from noiseppo.rewards.jpeg import QUALITY
from noiseppo.rewards.scoring import score_batch
from noiseppo.rewards.server import make_server
from noiseppo.shapes.render import render_scene
from servers import server_process, serving

PROMPTS = ["a red circle", "two blue squares"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two Shapes scenes (flat colours) and their noisy copies: 4 images of 32x32."""
    scenes = torch.stack([torch.from_numpy(np.array(render_scene(p, 0)[0])) for p in PROMPTS])
    scenes = scenes.permute(0, 3, 1, 2).float() / 255
    noisy = (scenes + 0.3 * torch.randn(scenes.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return torch.cat([scenes, noisy])


# -- JPEG


def test_jpeg_size_in_kb_and_its_sign(images: torch.Tensor) -> None:
    prompts = PROMPTS * 2
    size = score_batch(get_reward("jpeg_incompressibility"), images, prompts)
    buffer = io.BytesIO()
    Image.fromarray((images[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(buffer, "JPEG", quality=QUALITY)
    assert size[0] == pytest.approx(len(buffer.getvalue()) / 1000)  # kB, as DDPO counts them
    assert (size[2:] > size[:2]).all(), "noise does not compress"
    assert torch.equal(score_batch(get_reward("jpeg_compressibility"), images, prompts), -size)
    assert torch.equal(get_reward("jpeg_incompressibility")(images.numpy(), prompts), size)  # what `score` passes


# -- module:function

USER_MODULE = """
import torch

def brightness(images, prompts):
    return images.mean((1, 2, 3))

def too_few(images, prompts):
    return images.mean((1, 2, 3))[:-1]

class Darkness:
    def __init__(self):
        self.sign = -1.0

    def __call__(self, images, prompts):
        return self.sign * images.mean((1, 2, 3))

NOT_A_FUNCTION = 3
"""


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_rewards.py").write_text(USER_MODULE)
    (tmp_path / "broken_rewards.py").write_text("import torch\nraise RuntimeError('no GPU here')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "my_rewards", raising=False)
    return tmp_path


def test_module_function_rewards(user_folder: Path, images: torch.Tensor) -> None:
    brightness = images.mean((1, 2, 3))
    assert torch.equal(score_batch(get_reward("my_rewards:brightness"), images, PROMPTS * 2), brightness)
    assert torch.equal(score_batch(get_reward("my_rewards:Darkness"), images, PROMPTS * 2), -brightness)
    by_path = get_reward(f"{user_folder / 'my_rewards.py'}:brightness")
    assert torch.equal(by_path(images, PROMPTS * 2), brightness)
    with pytest.raises(UserError, match="the reward returned 3 scores for 4 images"):
        score_batch(get_reward("my_rewards:too_few"), images, PROMPTS * 2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("my_rewards:nothing", "reward 'my_rewards:nothing': module 'my_rewards' has no attribute 'nothing'"),
        ("my_rewards:NOT_A_FUNCTION", "reward 'my_rewards:NOT_A_FUNCTION': 'NOT_A_FUNCTION' is a int, not a function"),
        ("no_such_rewards:f", "reward 'no_such_rewards:f': no module named 'no_such_rewards' (not in the current"),
        ("my_rewards:", "reward 'my_rewards:': expected module:function, e.g. my_rewards:sharpness"),
        ("gone.py:f", "reward 'gone.py:f': gone.py: file not found"),
        ("broken_rewards:f", "reward 'broken_rewards:f': importing 'broken_rewards' raised RuntimeError: no GPU here"),
    ],
)
def test_a_bad_module_function_is_one_line(user_folder: Path, spec: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        get_reward(spec)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# -- weighted sums


def test_weighted_sums(user_folder: Path, images: torch.Tensor) -> None:
    prompts = PROMPTS * 2
    shapes = score_batch(get_reward("shapes"), images, prompts)
    kb = score_batch(get_reward("jpeg_incompressibility"), images, prompts)
    total = get_reward("0.5*shapes + -2*jpeg_incompressibility+my_rewards:brightness")
    assert total.image_size == (32, 32)  # a term's size constraint is the sum's
    expected = 0.5 * shapes - 2 * kb + images.mean((1, 2, 3))
    assert torch.allclose(score_batch(total, images, prompts), expected)
    with pytest.raises(UserError, match="my_rewards:too_few: the reward returned 3 scores for 4 images"):
        score_batch(get_reward("shapes+my_rewards:too_few"), images, prompts)
    with pytest.raises(UserError, match=r"cannot read the term '2\*\*shapes' \(write WEIGHT\*NAME\+WEIGHT\*NAME\)"):
        get_reward("2**shapes+shapes")
    with pytest.raises(UserError, match="cannot read the term ''"):
        get_reward("shapes+")
    with pytest.raises(UserError, match="unknown reward 'nope'"):
        get_reward("1*shapes+0.5*nope")


def test_cli_trains_on_a_weighted_sum(noiseppo, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--reward", "shapes+0.01*jpeg_compressibility", "--out", str(run)]
    done = noiseppo.in_process(*args, "eval_prompts=", "threads=1", "iterations=1")
    assert done.returncode == 0, done.stderr
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["reward_mean"] < 1  # partial minus a hundredth of the kB


# -- HTTP


class Raw(BaseHTTPRequestHandler):
    """A misbehaving reward server: ``reply`` is what it answers, after ``delay`` seconds."""

    reply: bytes = b""
    delay: float = 0.0

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        self.send_response(200)
        self.end_headers()
        try:
            self.wfile.write(self.reply)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args) -> None:
        pass


def raw_server(reply: bytes, delay: float = 0.0) -> HTTPServer:
    handler = type("Handler", (Raw,), {"reply": reply, "delay": delay})
    return HTTPServer(("127.0.0.1", 0), handler)


def test_the_reference_server_answers_like_the_reward_itself(images: torch.Tensor) -> None:
    prompts = PROMPTS * 2
    local = score_batch(get_reward("0.5*shapes+jpeg_incompressibility"), images, prompts)
    with serving(make_server(get_reward("0.5*shapes+jpeg_incompressibility"))) as url:
        remote = score_batch(get_reward(url), images, prompts)
        assert torch.equal(remote, local), "PNG is lossless on 8-bit images"
        with pytest.raises(UserError, match=r"refused the batch \(HTTP 400: 1 prompts for 0 images"):
            HttpReward(url)._post(json.dumps({"prompts": ["a"], "images": []}).encode())
        with pytest.raises(UserError, match=r"refused the batch \(HTTP 400: image 0 is not base64 text\)"):
            HttpReward(url)._post(json.dumps({"prompts": ["a"], "images": ["not png"]}).encode())
    with serving(make_server(get_reward("shapes"))) as url:  # the reward's own checks: the request's fault
        small = torch.zeros(1, 3, 8, 8)
        with pytest.raises(UserError, match=r"refused the batch \(HTTP 422: the backend made images of shape"):
            get_reward(url)(small, PROMPTS[:1])


def test_a_server_that_times_out(images: torch.Tensor) -> None:
    with serving(raw_server(b'{"scores": [1, 2, 3, 4]}', delay=1.0)) as url:
        reward = get_reward(url + "#timeout=0.2&retries=1")
        start = time.monotonic()
        with pytest.raises(UserError, match=r"no scores after 2 tries \(timed out; timeout 0.2 s\)"):
            reward(images, PROMPTS * 2)
        assert time.monotonic() - start < 3


def test_a_server_that_returns_the_wrong_count_or_garbage(images: torch.Tensor) -> None:
    with serving(raw_server(b'{"scores": [1.0, null]}')) as url:
        scores = get_reward(url)(images[:2], PROMPTS)
        assert scores[0] == 1 and scores[1].isnan()  # null is a failed image: NaN
        with pytest.raises(UserError, match="the reward returned 2 scores for 4 images"):
            score_batch(get_reward(url), images, PROMPTS * 2)
    with serving(raw_server(b'{"score": 1}')) as url:
        with pytest.raises(UserError, match=r'expected \{"scores": \[...\]\}, got'):
            get_reward(url)(images, PROMPTS * 2)
    with serving(raw_server(b"<html>")) as url:
        with pytest.raises(UserError, match="the answer is not JSON"):
            get_reward(url)(images, PROMPTS * 2)
    with serving(raw_server(b"")) as url:  # a closed port, once the server is gone
        pass
    with pytest.raises(UserError, match=r"no scores after 1 try \(.*refused"):
        get_reward(url + "#retries=0")(images, PROMPTS * 2)
    with pytest.raises(UserError, match=r"unknown option\(s\) retry \(known: timeout, retries, token\)"):
        get_reward(url + "#retry=1")


def test_cli_reward_server(noiseppo, images: torch.Tensor, tmp_path: Path) -> None:
    args = ["--reward", "jpeg_incompressibility", "--port", "0"]
    with server_process(noiseppo, *args, log=tmp_path / "log") as (_, url):
        assert url.startswith("http://127.0.0.1:")
        remote = score_batch(get_reward(url), images, PROMPTS * 2)
        assert torch.equal(remote, get_reward("jpeg_incompressibility")(images, PROMPTS * 2))
        request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)


def test_cli_scores_image_files(noiseppo, user_folder: Path, images: torch.Tensor) -> None:
    from noiseppo.images import to_pil

    to_pil(images[0]).save(user_folder / "a.png")
    for name, expected in [
        ("jpeg_incompressibility", get_reward("jpeg_incompressibility")(images[:1], PROMPTS[:1])),
        ("my_rewards:Darkness", -images[:1].mean((1, 2, 3))),  # a tensor, as in training
    ]:
        done = noiseppo.in_process("score", "--reward", name, "--prompt", "x", user_folder / "a.png")
        assert done.returncode == 0, done.stderr
        row = json.loads(done.stdout)
        assert row["score"] == pytest.approx(float(expected[0]), abs=1e-6)


# -- CLIP score


def test_clip_score_with_a_tiny_clip(tmp_path: Path, images: torch.Tensor) -> None:
    from transformers import CLIPModel, CLIPProcessor

    from tiny_models import tiny_clip

    folder = tiny_clip(tmp_path, seed=2)  # a seed whose random CLIP scores some pairs above 0 and some below
    reward = get_reward(f"clip_score@{folder}")
    prompts = ["a red circle", "two blue squares", "a cat", "a dog"]
    scores = score_batch(reward, images, prompts)
    assert scores.shape == (4,) and (scores == 0).any() and (scores > 0).any() and (scores <= 100).all()
    assert torch.equal(score_batch(reward, images, prompts), scores)
    # The definition, by hand: 100 x max(cosine of the projected embeddings, 0).
    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)
    inputs = processor(text=prompts, images=list(images), do_rescale=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    cosine = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    assert torch.allclose(scores, 100 * cosine.clamp(min=0), atol=1e-4)
    with pytest.raises(UserError, match="cannot load the CLIP model '.*nowhere': "):
        get_reward(f"clip_score@{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match=r"reward 'clip_score@': give a model after '@'"):
        get_reward("clip_score@")


# -- LAION aesthetic head


def test_aesthetic_heads_on_a_tiny_clip(tmp_path: Path, images: torch.Tensor) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPModel, CLIPProcessor

    from tiny_models import tiny_clip

    clip = tiny_clip(tmp_path)  # 8-wide projections
    model, processor = CLIPModel.from_pretrained(clip), CLIPProcessor.from_pretrained(clip)
    with torch.no_grad():
        out = model(**processor(text=["x"], images=list(images), do_rescale=False, return_tensors="pt"))
    embeds = out.image_embeds  # normalised projections, as LAION's heads read them

    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 1)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(8, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1),
    ).eval()  # fmt: skip
    save_file(linear.state_dict(), tmp_path / "v1.safetensors")
    save_file({f"layers.{k}": v for k, v in mlp.state_dict().items()}, tmp_path / "v2.safetensors")
    for name, head in [("v1", linear), ("v2", mlp)]:
        reward = get_reward(f"aesthetic@{tmp_path / name}.safetensors@{clip}")
        with torch.no_grad():
            expected = head(embeds).squeeze(-1)
        assert torch.allclose(score_batch(reward, images, PROMPTS * 2), expected, atol=1e-5), name

    save_file({"weight": torch.zeros(1, 16), "bias": torch.zeros(1)}, tmp_path / "wide.safetensors")
    save_file({"w": torch.zeros(1)}, tmp_path / "other.safetensors")
    torch.save(linear.state_dict(), tmp_path / "v1.pth")
    for spec, message in [
        ("aesthetic", "the aesthetic reward needs its head: aesthetic@HEAD.safetensors"),
        (
            f"aesthetic@{tmp_path / 'wide.safetensors'}@{clip}",
            "the head reads 16-wide embeddings, the CLIP model makes 8",
        ),
        (f"aesthetic@{tmp_path / 'other.safetensors'}", "not a LAION aesthetic head (tensors w, ...)"),
        (f"aesthetic@{tmp_path / 'v1.pth'}", "is a pickle (e.g. from torch.save), not a safetensors file"),
    ]:
        with pytest.raises(UserError) as info:
            get_reward(spec)
        assert message in str(info.value), (spec, str(info.value))


# -- PickScore


def test_pickscore_with_a_tiny_clip(tmp_path: Path, images: torch.Tensor) -> None:
    from transformers import CLIPModel, CLIPProcessor

    from tiny_models import tiny_clip

    folder = tiny_clip(tmp_path, seed=2)  # some pairs with a cosine above 0 and some below
    prompts = ["a red circle", "two blue squares", "a cat", "a dog"]
    scores = score_batch(get_reward(f"pickscore@{folder}"), images, prompts)
    # The definition, by hand (PickScore's README): exp(logit_scale) x cosine of the projected embeddings.
    model, processor = CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)
    inputs = processor(text=prompts, images=list(images), do_rescale=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=inputs["pixel_values"])
        text = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    image, text = (x if isinstance(x, torch.Tensor) else x.pooler_output for x in (image, text))  # transformers 4 / 5
    cosine = torch.nn.functional.cosine_similarity(image, text)
    scale = model.logit_scale.exp().item()
    assert scale == pytest.approx(14.29, abs=0.01)  # CLIP's initial 1/0.07, so the scale is really applied
    assert torch.allclose(scores, scale * cosine, atol=1e-4)
    assert (scores < 0).any() and (scores > 0).any()  # no clamp at 0, unlike clip_score
    clip = score_batch(get_reward(f"clip_score@{folder}"), images, prompts)
    positive = cosine > 0
    assert torch.allclose(scores[positive], scale * clip[positive] / 100, atol=1e-4)
    with pytest.raises(UserError, match="cannot load the CLIP model '.*nowhere': "):
        get_reward(f"pickscore@{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match=r"reward 'pickscore@': give a model after '@'"):
        get_reward("pickscore@")


def test_pickscore_offline_is_one_line(noiseppo, tmp_path: Path, images: torch.Tensor) -> None:
    from noiseppo.images import to_pil

    to_pil(images[0]).save(tmp_path / "a.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    # A process: the hub reads the setting at import.
    result = noiseppo("score", "--reward", "pickscore", "--prompt", "a red circle", tmp_path / "a.png", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "noiseppo: error: model 'yuvalkirstain/PickScore_v1' is neither a local folder nor in the Hugging Face "
        "cache, and the hub cannot be reached (offline?): download it first or give a local folder"
    ]


# -- ImageReward and HPSv2, behind extras

EXTRAS = {"imagereward": ("image-reward", "ImageReward"), "hpsv2": ("hpsv2", "hpsv2")}
"""reward: (its package on PyPI, the module it imports)."""


@pytest.mark.parametrize("name", list(EXTRAS))
def test_a_reward_whose_extra_is_missing_is_one_line(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's exception; the command line's answer is a row of docs/hostile_inputs.md."""
    package, module = EXTRAS[name]
    if importlib.util.find_spec(module) is not None:  # installed here: hide it
        monkeypatch.setitem(sys.modules, module, None)
    message = (
        f"reward '{name}' needs the {package} package: {INSTALL[name]}, "
        "or serve it over HTTP from an environment of its own (README: Reward server)"
    )
    with pytest.raises(UserError) as info:
        get_reward(name)
    assert str(info.value) == message


def test_an_extra_that_is_installed_but_does_not_import_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What image-reward 1.5 does next to transformers 5: it imports a helper transformers dropped.
    (tmp_path / "ImageReward").mkdir()
    (tmp_path / "ImageReward" / "__init__.py").write_text("from transformers.modeling_utils import no_such_helper\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "ImageReward", raising=False)
    with pytest.raises(UserError) as info:
        get_reward("imagereward")
    assert str(info.value).startswith(
        "reward 'imagereward': the image-reward package is installed but importing ImageReward failed "
        "(cannot import name 'no_such_helper' from 'transformers.modeling_utils'"
    )
    assert str(info.value).endswith(
        "it pins its own dependencies: serve it over HTTP from an environment of its own (README: Reward server)"
    )


def by_hand(image: Image.Image, prompt: str) -> float:
    """What the fake packages answer: a number that depends on both the image and its prompt."""
    return float(np.asarray(image).mean()) + len(prompt)


@pytest.fixture
def fake_extras(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Fake ImageReward and hpsv2 modules with the real packages' signatures (image-reward 1.5,
    hpsv2 1.2.0) that record what they were given."""
    seen: dict[str, list] = {"load": [], "imagereward": [], "hpsv2": []}

    class Model:
        def score(self, prompt: str, image: Image.Image) -> float:  # a single image: a float
            seen["imagereward"].append((prompt, image, torch.is_grad_enabled()))
            return by_hand(image, prompt)

    def load(name: str = "ImageReward-v1.0", device: str = "cpu") -> Model:
        print(f"load checkpoint from {name}")  # as the real one does, on stdout
        seen["load"].append(name)
        return Model()

    def score(images: list, prompt: str, hps_version: str = "v2.0") -> list:  # a list: a list of np.float32
        seen["hpsv2"].append((prompt, list(images), hps_version))
        return [np.float32(by_hand(image, prompt)) for image in images]

    image_reward = types.ModuleType("ImageReward")
    image_reward.load = load
    hpsv2 = types.ModuleType("hpsv2")
    hpsv2.score = score
    monkeypatch.setitem(sys.modules, "ImageReward", image_reward)
    monkeypatch.setitem(sys.modules, "hpsv2", hpsv2)
    monkeypatch.setitem(sys.modules, "hpsv2.img_score", types.ModuleType("hpsv2.img_score"))
    return seen


def test_extras_get_8_bit_rgb_images_and_their_own_prompts(
    fake_extras: dict[str, list], images: torch.Tensor, capsys
) -> None:
    prompts = ["a red circle", "two blue squares", "a red circle", "a cat"]
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # what to_pil makes
    expected = torch.tensor([by_hand(Image.fromarray(p), q) for p, q in zip(pixels, prompts, strict=True)])

    reward = get_reward("imagereward")
    assert fake_extras["load"] == ["ImageReward-v1.0"]
    assert capsys.readouterr().out == "", "the package's prints go to stderr: stdout holds score's JSON"
    scores = score_batch(reward, images, prompts)
    assert scores.dtype == torch.float32 and torch.allclose(scores, expected)
    assert [p for p, _, _ in fake_extras["imagereward"]] == prompts
    assert not any(grad for _, _, grad in fake_extras["imagereward"])
    given = [image for _, image, _ in fake_extras["imagereward"]]

    scores = score_batch(get_reward("hpsv2"), images, prompts)
    assert scores.dtype == torch.float32 and torch.allclose(scores, expected)
    # One call per distinct prompt, in order of first appearance (hpsv2 reloads its checkpoint per call).
    calls = fake_extras["hpsv2"]
    assert [(p, len(ims), v) for p, ims, v in calls] == [("a red circle", 2, "v2.1"), ("two blue squares", 1, "v2.1"),
                                                         ("a cat", 1, "v2.1")]  # fmt: skip
    assert [calls[0][1][0], calls[1][1][0], calls[0][1][1], calls[2][1][0]] == given  # same images, same order

    for k, image in enumerate(given):
        assert image.mode == "RGB" and image.size == (32, 32)
        assert np.array_equal(np.asarray(image), pixels[k])
        back = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
        assert (back - images[k]).abs().max() <= 0.5 / 255 + 1e-6  # rounded, not truncated


def test_an_imagereward_that_does_not_load_is_one_line(
    fake_extras: dict[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    def load(name: str) -> None:  # what image-reward 1.5 raises for a name it does not know
        raise RuntimeError(f"Model {name} not found; available models = ['ImageReward-v1.0']")

    monkeypatch.setattr(sys.modules["ImageReward"], "load", load)
    with pytest.raises(UserError) as info:
        get_reward("imagereward")
    assert str(info.value) == (
        "cannot load the ImageReward model 'ImageReward-v1.0': "
        "Model ImageReward-v1.0 not found; available models = ['ImageReward-v1.0']"
    )


def test_cli_scores_with_an_extra(noiseppo, fake_extras: dict[str, list], tmp_path: Path, images: torch.Tensor) -> None:
    from noiseppo.images import to_pil

    to_pil(images[0]).save(tmp_path / "a.png")
    for name in EXTRAS:
        done = noiseppo.in_process("score", "--reward", name, "--prompt", "a red circle", tmp_path / "a.png")
        assert done.returncode == 0, done.stderr
        out, err = done.stdout, done.stderr
        row = json.loads(out)  # one JSON line: the package's own prints went to stderr
        assert row == {
            "image": str(tmp_path / "a.png"),
            "score": pytest.approx(by_hand(to_pil(images[0]), "a red circle")),
        }
        assert ("load checkpoint from ImageReward-v1.0" in err) == (name == "imagereward")
