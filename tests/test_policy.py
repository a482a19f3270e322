"""The noise policy: exact identity at initialisation, densities, and loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from noiseppo.backends import get_backend
from noiseppo.backends.base import check_compatible
from noiseppo.errors import UserError
from noiseppo.policy import (
    NoisePolicy,
    gaussian_kl,
    latents_for_seeds,
    load_policy,
)
from noiseppo.sampling import sample
from noiseppo.seeds import standard_noise

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow square"]


@pytest.fixture(scope="module")
def backend():
    return get_backend("shapes", None, "ddim")


def randomised(policy: NoisePolicy, seed: int = 0) -> NoisePolicy:
    """The same policy with its zero head replaced by random weights, so μ and σ vary."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        policy.head.weight.copy_(torch.randn(policy.head.weight.shape, generator=g) * 0.3)
        policy.head.bias.copy_(torch.randn(policy.head.bias.shape, generator=g) * 0.3)
    return policy


def test_untrained_policy_reproduces_the_frozen_models_images_exactly(backend) -> None:
    policy = NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True)
    plain = sample(backend, PROMPTS, 2, 2, 1.0, seed=5)
    with_policy = sample(backend, PROMPTS, 2, 2, 1.0, seed=5, latents_fn=policy.noise_to_latents("sample"))
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
    with pytest.raises(UserError, match=r"latents of shape \(4, 8, 8\), backend 'shapes' takes \(3, 32, 32\)"):
        check_compatible(load_policy(tmp_path / "sd"), backend)
    broken = tmp_path / "broken"
    NoisePolicy(latent_shape=backend.latent_shape).save_pretrained(broken)
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot load the policy"):
        load_policy(broken)
    policy = NoisePolicy(latent_shape=backend.latent_shape)
    with pytest.raises(UserError, match=r"latents of shape \(3, 32, 32\), got \(3, 16, 16\)"):
        policy.noise_to_latents()(backend.encode(PROMPTS[:1]), torch.zeros(1, 3, 16, 16))


def test_preserve_variance_keeps_the_latent_energy_of_the_prior(backend) -> None:
    plain = NoisePolicy(latent_shape=backend.latent_shape, preserve_variance=True)
    eps = standard_noise(backend.latent_shape, [1, 2, 3])
    cond = backend.encode(PROMPTS)
    assert torch.equal(plain.noise_to_latents()(cond, eps), eps), "still exactly N(0, I) when untrained"
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True, preserve_variance=True))
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
    mean, log_sigma = policy(backend.encode(repeated))
    for i, prompt in enumerate(repeated):
        alone_mean, alone_log_sigma = policy(backend.encode([prompt]))
        torch.testing.assert_close(mean[i : i + 1], alone_mean)
        torch.testing.assert_close(log_sigma[i : i + 1], alone_log_sigma)
