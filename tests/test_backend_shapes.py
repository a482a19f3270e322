"""The Shapes backend: interface, schedulers, guidance, determinism and bad input to its API.

A tiny random model (built and saved here) keeps these fast; the shipped weights get
their own loading test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noiseppo.backends import get_backend
from noiseppo.backends.base import SCHEDULERS
from noiseppo.backends.shapes import DEFAULT_GUIDANCE, DEFAULT_MODEL, ShapesBackend
from noiseppo.configs.train import ShapesModelTrainConfig
from noiseppo.errors import UserError
from noiseppo.sampling.seeds import sample_seed, standard_noise
from noiseppo.training.shapes_base import build

SHIPPED_PARTIAL_FLOOR = 0.3
SHIPPED_CORRECT_FLOOR = 0.05
PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow circle"]


def save_tiny_model(folder: Path) -> Path:
    """A 1-block model whose zero-initialised output layers are randomised, so it draws something."""
    text_encoder, denoiser, scheduler = build(ShapesModelTrainConfig(dim=32, depth=1, text_dim=16))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in denoiser.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    text_encoder.save_pretrained(folder / "text_encoder")
    denoiser.save_pretrained(folder / "denoiser")
    scheduler.save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> ShapesBackend:
    return ShapesBackend.from_pretrained(tiny_model)


def noise(n: int, offset: int = 0) -> torch.Tensor:
    return standard_noise((3, 32, 32), range(offset, offset + n))


def test_encode_gives_token_states_pooled_and_mask(backend: ShapesBackend) -> None:
    c = backend.encode(PROMPTS)
    assert c.token_states.shape == (3, 9, 16) and c.pooled.shape == (3, 16)
    assert backend.token_dim == backend.pooled_dim == 16  # the text encoder's width, which a policy for it reads
    # <bos> plus the prompt's words are real tokens, the rest is padding.
    assert c.mask.sum(1).tolist() == [4, 4, 9]
    assert not c.token_states.requires_grad


def test_generate_shape_range_and_determinism(backend: ShapesBackend) -> None:
    c = backend.encode(PROMPTS)
    a = backend.generate(noise(3), c, steps=4, guidance=3.0)
    b = backend.generate(noise(3), c, steps=4, guidance=3.0)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, b), "same latents must give the same images, bit for bit"
    other = backend.generate(noise(3, offset=10), c, steps=4, guidance=3.0)
    assert not torch.equal(a, other), "the initial noise is the input: other noise, other images"


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("steps", [1, 50])
def test_every_scheduler_at_1_and_50_steps(tiny_model: Path, scheduler: str, steps: int) -> None:
    backend = ShapesBackend.from_pretrained(tiny_model, scheduler=scheduler)
    images = backend.generate(noise(2), backend.encode(PROMPTS[:2]), steps=steps, guidance=2.0)
    assert images.shape == (2, 3, 32, 32)
    assert torch.isfinite(images).all() and 0.0 <= images.min() and images.max() <= 1.0


def test_guidance_one_skips_the_unconditional_pass(backend: ShapesBackend) -> None:
    batch_sizes: list[int] = []
    hook = backend.denoiser.register_forward_hook(lambda m, args, out: batch_sizes.append(args[0].shape[0]))
    try:
        c = backend.encode(PROMPTS)
        backend.generate(noise(3), c, steps=3, guidance=1.0)
        assert batch_sizes == [3, 3, 3]
        batch_sizes.clear()
        backend.generate(noise(3), c, steps=3, guidance=4.0)
        assert batch_sizes == [6, 6, 6]
    finally:
        hook.remove()


def test_guidance_changes_the_images(backend: ShapesBackend) -> None:
    c = backend.encode(PROMPTS)
    assert not torch.equal(backend.generate(noise(3), c, 2, 1.0), backend.generate(noise(3), c, 2, 5.0))


def test_bfloat16_on_cpu_stays_close_to_float32(tiny_model: Path) -> None:
    full = ShapesBackend.from_pretrained(tiny_model)
    half = ShapesBackend.from_pretrained(tiny_model, dtype=torch.bfloat16)
    a = full.generate(noise(2), full.encode(PROMPTS[:2]), 4, 3.0)
    b = half.generate(noise(2), half.encode(PROMPTS[:2]), 4, 3.0)
    assert b.dtype == torch.float32
    assert (a - b).abs().mean() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_half_precision_matches_cpu(tiny_model: Path, dtype: str) -> None:
    cpu = get_backend("shapes", str(tiny_model))
    gpu = get_backend("shapes", str(tiny_model), device="cuda", dtype=dtype)
    a = cpu.generate(noise(2), cpu.encode(PROMPTS[:2]), 4, 3.0)
    b = gpu.generate(noise(2), gpu.encode(PROMPTS[:2]), 4, 3.0).cpu()
    assert (a - b).abs().mean() < 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be a whole number from 1 to 50, got 0"),
        ({"steps": 51}, "steps must be a whole number from 1 to 50, got 51"),
        ({"guidance": -1.0}, "guidance must be >= 0, got -1.0"),
        ({"guidance": float("nan")}, "guidance must be >= 0, got nan"),
        ({"latents": torch.zeros(3, 3, 16, 16)}, "latents must have shape (3, 3, 32, 32), got (3, 3, 16, 16)"),
        ({"latents": torch.zeros(2, 3, 32, 32)}, "latents must have shape (3, 3, 32, 32), got (2, 3, 32, 32)"),
        ({"latents": torch.zeros(3, 3, 32, 32, dtype=torch.long)}, "latents must be floating point"),
    ],
)
def test_generate_refuses_bad_input(backend: ShapesBackend, kwargs: dict, message: str) -> None:
    call = {"latents": noise(3), "steps": 4, "guidance": 3.0, **kwargs}
    with pytest.raises(UserError) as err:
        backend.generate(call["latents"], backend.encode(PROMPTS), call["steps"], call["guidance"])
    assert message in str(err.value)


def test_unknown_scheduler_and_prompt_outside_grammar(tiny_model: Path, backend: ShapesBackend) -> None:
    with pytest.raises(UserError, match="unknown scheduler 'heun' \\(known: ddim, euler, dpm, default\\)"):
        ShapesBackend.from_pretrained(tiny_model, scheduler="heun")
    with pytest.raises(UserError, match="word 2 'purple'"):
        backend.encode(["a purple circle"])


def test_corrupt_or_missing_weights_are_reported(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a Shapes model folder"):
        ShapesBackend.from_pretrained(tmp_path / "nothing-here")
    broken = save_tiny_model(tmp_path / "broken")
    weights = broken / "denoiser" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(UserError, match="cannot load the Shapes model weights"):
        ShapesBackend.from_pretrained(broken)


# Run in a fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported, so
# setting it in this (long since importing) process would test nothing. The socket is cut too.
OFFLINE_LOAD = textwrap.dedent(
    """
    import socket
    def no_network(*args, **kwargs):
        raise OSError("network use in an offline test")
    socket.socket.connect = socket.socket.connect_ex = socket.create_connection = no_network
    import sys
    import torch
    import huggingface_hub.constants
    from noiseppo.backends import get_backend
    assert huggingface_hub.constants.HF_HUB_OFFLINE, "HF_HUB_OFFLINE was not read"
    backend = get_backend(*sys.argv[1:])
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images = backend.generate(noise, backend.encode(["a red circle", "two blue squares"]), 2, 3.0)
    print(*images.shape, float(images.mean()))
    """
)


def test_shipped_weights_load_offline(tmp_path: Path) -> None:
    assert (DEFAULT_MODEL / "denoiser" / "diffusion_pytorch_model.safetensors").exists()
    size = sum(f.stat().st_size for f in DEFAULT_MODEL.rglob("*") if f.is_file())
    assert size < 16 * 2**20, f"shipped weights should be a few MB, got {size / 2**20:.1f} MB"
    (tmp_path / "hf").mkdir()  # an empty hub cache: nothing downloaded before can stand in
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD, "shapes"], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    *shape, mean = run.stdout.split()
    assert shape == ["2", "3", "32", "32"]
    backend = get_backend("shapes")  # and they are the images drawn here, where the hub is not cut off
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(mean) == pytest.approx(float(backend.generate(noise, backend.encode(PROMPTS[:2]), 2, 3.0).mean()))


def test_cli_sample_writes_images_jsonl_and_grid(noiseppo, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    args = ["sample", "--model", str(tiny_model), "--prompt", PROMPTS[0], "--prompt", PROMPTS[2], "--n", "2"]
    result = noiseppo.in_process(*args, "--steps", "2", "--seed", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == [f"images/{k:04d}.png" for k in range(4)]
    assert [r["seed"] for r in rows] == [sample_seed(7, i, j) for i in range(2) for j in range(2)]
    assert {r["steps"] for r in rows} == {2} and {r["guidance"] for r in rows} == {DEFAULT_GUIDANCE}
    assert all(r["correct"] in (0, 1) and 0.0 <= r["partial"] <= 1.0 for r in rows)
    with Image.open(out / "images" / "0003.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    with Image.open(out / "grid.png") as im:
        assert im.width > 4 * 32
    # Same command, same seed, in another process: the same images, so later runs pair one-to-one with these.
    again = noiseppo(*args, "--steps", "2", "--seed", "7", "--out", str(tmp_path / "again"), timeout=300)
    assert again.returncode == 0, again.stderr
    first = np.asarray(Image.open(out / "images" / "0002.png"))
    second = np.asarray(Image.open(tmp_path / "again" / "images" / "0002.png"))
    assert np.array_equal(first, second)


def test_shipped_model_draws_what_the_verifier_accepts() -> None:
    """A quality floor far below the README's measured figures: the weights are the real thing."""
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.render import RenderSpec, sample
    from noiseppo.shapes.verifier import verify

    backend = get_backend("shapes")
    prompts = load_prompts("shapes-test")[::6]  # 25 prompts across all templates
    samples = sample(backend, prompts, RenderSpec(16, DEFAULT_GUIDANCE, 1, 0))
    verdicts = verify(torch.stack([s.image for s in samples]), [s.prompt for s in samples])
    assert np.mean([v.partial for v in verdicts]) >= SHIPPED_PARTIAL_FLOOR
    assert np.mean([v.correct for v in verdicts]) >= SHIPPED_CORRECT_FLOOR
