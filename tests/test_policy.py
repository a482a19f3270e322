"""The noise policy: exact identity at initialisation, densities, and loading."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from noiseppo.backends import get_backend
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.policy import (
    NoisePolicy,
    check_policy,
    gaussian_kl,
    latents_for_seeds,
    load_policy,
)
from noiseppo.sampling.render import RenderSpec, sample
from noiseppo.sampling.seeds import standard_noise
from noiseppo.storage.shipped import SHIPPED_POLICIES

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow square"]


@pytest.fixture(scope="module")
def backend():
    return get_backend("shapes", None, "ddim")


READOUT_PARAMETERS = ("head", "cell_weight", "cell_bias", "token_map")
"""The parameters of the three readouts (shared, cell, token), which start at zero."""


def randomised(policy: NoisePolicy, seed: int = 0) -> NoisePolicy:
    """The same policy with its zero readout, whichever it has, replaced by random weights, so μ and σ vary."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if name.split(".")[0] in READOUT_PARAMETERS:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return policy


def test_untrained_policy_reproduces_the_frozen_models_images_exactly(backend) -> None:
    policy = NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True)
    plain = sample(backend, PROMPTS, RenderSpec(2, 1.0, 2, 5))
    with_policy = sample(backend, PROMPTS, RenderSpec(2, 1.0, 2, 5), latents_fn=policy.noise_to_latents("sample"))
    assert [s.seed for s in plain] == [s.seed for s in with_policy]
    for a, b in zip(plain, with_policy, strict=True):
        assert torch.equal(a.image, b.image)
    seeds = [s.seed for s in plain]
    latents = latents_for_seeds(policy, backend, [s.prompt for s in plain], seeds)
    assert torch.equal(latents, standard_noise(backend.latent_shape, seeds))


def test_log_prob_and_kl_agree_with_torch_distributions(backend) -> None:
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True, log_sigma_max=0.7))
    cond = backend.encode(PROMPTS)
    mean, log_sigma = policy(cond)
    sigma = log_sigma.exp()
    assert mean.abs().max() > 0.05 and (sigma - 1).abs().max() > 0.05, "the test needs a non-trivial policy"
    assert float(log_sigma.detach().abs().max()) <= 0.7
    z = policy.sample(
        cond, torch.randn(len(PROMPTS), *backend.latent_shape, generator=torch.Generator().manual_seed(1))
    )
    reference = Normal(mean, sigma)
    density = reference.log_prob(z).flatten(1)
    torch.testing.assert_close(policy.log_prob(z, cond, "sum"), density.sum(1), rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(policy.log_prob(z, cond, "mean"), density.mean(1), rtol=1e-5, atol=1e-5)
    prior = Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected_kl = kl_divergence(reference, prior).flatten(1).sum(1)
    torch.testing.assert_close(policy.kl_to_prior(cond, "sum"), expected_kl, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(policy.kl_to_prior(cond, "mean"), expected_kl / mean[0].numel(), rtol=1e-5, atol=1e-6)
    other_mean, other_log_sigma = mean.flip(0), log_sigma.flip(0)
    torch.testing.assert_close(
        gaussian_kl(mean, log_sigma, other_mean, other_log_sigma),
        kl_divergence(reference, Normal(other_mean, other_log_sigma.exp())).flatten(1).mean(1),
    )


def test_mean_mode_gives_mu_and_sample_mode_is_reparameterised(backend) -> None:
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape))
    cond = backend.encode(PROMPTS)
    eps = torch.randn(len(PROMPTS), *backend.latent_shape)
    mean, log_sigma = policy(cond)
    assert torch.equal(log_sigma, torch.zeros_like(mean)), "σ is fixed at 1 unless learn_sigma"
    torch.testing.assert_close(policy.noise_to_latents("sample")(cond, eps), mean + eps)
    torch.testing.assert_close(policy.noise_to_latents("mean")(cond, eps), mean)


def test_save_and_load_round_trip(tmp_path: Path, backend) -> None:
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True))
    policy.save_pretrained(tmp_path / "policy")
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    cond = backend.encode(PROMPTS)
    for path in (tmp_path, tmp_path / "policy"):  # a run folder or the policy folder itself
        loaded = load_policy(path)
        for a, b in zip(policy(cond), loaded(cond), strict=True):
            assert torch.equal(a, b)


def test_bad_policies_are_refused(tmp_path: Path, backend) -> None:
    with pytest.raises(UserError, match="neither a run folder, a policy folder nor a shipped policy"):
        load_policy(tmp_path / "nothing")
    NoisePolicy(latent_shape=(4, 8, 8)).save_pretrained(tmp_path / "sd")
    with pytest.raises(
        UserError, match=r"latents of shape \(4, 8, 8\), .*; backend 'shapes' has latents of shape \(3, "
    ):
        check_policy(load_policy(tmp_path / "sd"), backend)
    with pytest.raises(UserError, match="token states 64 wide and pooled vectors 32 wide; the conditioning has"):
        NoisePolicy(pooled_dim=32)(backend.encode(PROMPTS[:1]))  # the forward pass checks what it is given
    broken = tmp_path / "broken"
    NoisePolicy(latent_shape=backend.latent_shape).save_pretrained(broken)
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot load the policy"):
        load_policy(broken)
    policy = NoisePolicy(latent_shape=backend.latent_shape)
    with pytest.raises(
        UserError, match=r"latents of shape \(3, 32, 32\), .*; the input has latents of shape \(3, 16, 16\)"
    ):
        policy.noise_to_latents()(backend.encode(PROMPTS[:1]), torch.zeros(1, 3, 16, 16))


def test_preserve_variance_keeps_the_latent_energy_of_the_prior(backend) -> None:
    plain = NoisePolicy(latent_shape=backend.latent_shape, preserve_variance=True)
    eps = standard_noise(backend.latent_shape, [1, 2, 3])
    cond = backend.encode(PROMPTS)
    assert torch.equal(plain.noise_to_latents()(cond, eps), eps), "still exactly N(0, I) when untrained"
    shared = NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True, preserve_variance=True, readout="shared")
    policy = randomised(shared)
    with torch.no_grad():
        policy.head.bias[:3] += 2.0  # a large mean, which would otherwise inflate ‖z‖
        mean, log_sigma = policy(cond)
    energy = (mean**2 + torch.exp(2 * log_sigma)).flatten(1).mean(1)
    torch.testing.assert_close(energy, torch.ones(len(PROMPTS)))
    z = policy.sample(cond, eps)
    expected = Normal(mean, log_sigma.exp()).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(policy.log_prob(z, cond, "sum"), expected)


def test_repeated_prompts_are_computed_once_with_the_same_result(backend) -> None:
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True))
    repeated = [p for p in PROMPTS for _ in range(3)][::-1]
    rows: list[int] = []
    inner = policy._forward
    policy._forward = lambda conditioning: (rows.append(len(conditioning)), inner(conditioning))[1]
    mean, log_sigma = policy(backend.encode(repeated))
    assert rows == [len(PROMPTS)]  # one pass over the distinct prompts, not one row per repeat
    del policy._forward
    for i, prompt in enumerate(repeated):
        alone_mean, alone_log_sigma = policy(backend.encode([prompt]))
        torch.testing.assert_close(mean[i : i + 1], alone_mean)
        torch.testing.assert_close(log_sigma[i : i + 1], alone_log_sigma)


def test_the_shipped_policies_give_the_latents_they_gave_before_two_widths(backend) -> None:
    """shapes-steps4's config.json says ``"cond_dim": 64`` (one width for token states and pooled
    vector), as every policy saved before ``token_dim`` and ``pooled_dim`` does: it loads as both
    widths, and gives the latents it gave then (values computed before the change; to 1e-6, not bit
    for bit, because the matmuls' float rounding depends on how many CPU threads an earlier test left)."""
    policy = load_policy("shapes-steps4")
    assert json.loads(((SHIPPED_POLICIES / "shapes-steps4") / "config.json").read_text())["cond_dim"] == 64
    assert (policy.config.token_dim, policy.config.pooled_dim, policy.config.cond_dim) == (64, 64, None)
    prompt = ["a red circle left of a blue square"]
    z = latents_for_seeds(policy, backend, prompt, [7])[0]
    close = {"atol": 1e-6, "rtol": 0}
    torch.testing.assert_close(
        z[:, 0, 0], torch.tensor([-0.7697548866271973, 0.9149700999259949, -1.276734471321106]), **close
    )
    torch.testing.assert_close(
        z[:, 16, 16], torch.tensor([-2.193084478378296, 0.8955482244491577, 0.5952251553535461]), **close
    )
    row = [0.7397078275680542, -0.9692724943161011, -0.02247539535164833, 0.19840630888938904]
    torch.testing.assert_close(z[0, 5, :4], torch.tensor(row), **close)
    mean = latents_for_seeds(policy, backend, prompt, [7], mode="mean")[0, :, 16, 16]
    torch.testing.assert_close(
        mean, torch.tensor([-0.09713421761989594, 0.062219299376010895, 0.02703302539885044]), **close
    )


def test_policies_saved_with_one_width_load_as_both(tmp_path: Path, backend) -> None:
    """A policy saved in the one-width format (``cond_dim``) loads with that width for token states and
    pooled vector and computes what the same weights compute in the two-width format; saving it again
    writes the two widths. One width given together with two other ones is refused."""
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, token_dim=64, pooled_dim=64))
    policy.save_pretrained(tmp_path / "new")
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert (config["token_dim"], config["pooled_dim"], config["cond_dim"]) == (64, 64, None)
    old = {k: v for k, v in config.items() if k not in ("token_dim", "pooled_dim")} | {"cond_dim": 64}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(old))
    (tmp_path / "new" / "diffusion_pytorch_model.safetensors").rename(
        tmp_path / "old" / "diffusion_pytorch_model.safetensors"
    )
    loaded = load_policy(tmp_path / "old")
    assert (loaded.config.token_dim, loaded.config.pooled_dim, loaded.config.cond_dim) == (64, 64, None)
    cond = backend.encode(PROMPTS)
    for a, b in zip(policy(cond), loaded(cond), strict=True):
        assert torch.equal(a, b)
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert (again["token_dim"], again["pooled_dim"], again["cond_dim"]) == (64, 64, None)

    narrow = NoisePolicy(latent_shape=(4, 8, 8), cond_dim=16)  # an old SD policy's config, as from_config reads it
    assert (narrow.token_in.in_features, narrow.pooled_in.in_features) == (16, 16)
    with pytest.raises(UserError, match="cond_dim 16 .* with token_dim 32 and pooled_dim 8: give one or the other"):
        NoisePolicy(cond_dim=16, token_dim=32, pooled_dim=8)


def test_token_states_and_pooled_vector_have_widths_of_their_own(backend) -> None:
    """Widths that differ (as SDXL's 2048 and 1280): each input projection reads its own, and the
    untrained policy is still exactly N(0, I)."""
    policy = NoisePolicy(latent_shape=backend.latent_shape, token_dim=64, pooled_dim=24)
    assert (policy.token_in.in_features, policy.pooled_in.in_features) == (64, 24)
    cond = backend.encode(PROMPTS)
    cond.pooled = cond.pooled[:, :24]  # a narrower pooled vector than the token states
    eps = standard_noise(backend.latent_shape, [0, 1, 2])
    assert torch.equal(policy.noise_to_latents()(cond, eps), eps)
    with pytest.raises(UserError, match="pooled vectors 24 wide; backend 'shapes' has .* pooled vectors 64 wide$"):
        check_policy(policy, backend)


def test_the_policy_and_the_training_config_agree_on_every_default() -> None:
    """A policy built in Python is the one ``noiseppo train`` builds: every option the two share has
    one default."""
    policy = {k: p.default for k, p in inspect.signature(NoisePolicy.__init__).parameters.items() if k != "self"}
    config = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    shared = policy.keys() & config.keys()
    assert {"grid", "width", "readout", "query_std", "feature_mlp", "learn_sigma", "prompt_blind"} <= shared
    assert {k: policy[k] for k in shared} == {k: config[k] for k in shared}
    assert (NoisePolicy().config.readout, NoisePolicy().config.query_std) == (TrainConfig().readout, 1.0)


def test_a_policy_saved_before_the_readout_option_loads_as_it_was(tmp_path: Path, backend) -> None:
    """A config.json without ``readout`` and ``query_std`` (saved before they existed) loads with
    the values it was built with, the shared readout and queries of std 0.02, not today's defaults;
    saved again, it says so."""
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, readout="shared", query_std=0.02))
    policy.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in config.items() if k not in ("readout", "query_std")}))
    loaded = load_policy(tmp_path / "old")
    assert (loaded.config.readout, loaded.config.query_std) == ("shared", 0.02)
    cond = backend.encode(PROMPTS)
    for a, b in zip(policy(cond), loaded(cond), strict=True):
        assert torch.equal(a, b)
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert (again["readout"], again["query_std"]) == ("shared", 0.02)
    # A config that names them keeps them: the old values only fill a gap.
    NoisePolicy(latent_shape=backend.latent_shape).save_pretrained(tmp_path / "new")
    new = load_policy(tmp_path / "new").config
    assert (new.readout, new.query_std) == ("cell", 1.0)
