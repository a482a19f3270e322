"""The prompt-conditioned initial-noise policy π_θ(z | c) = N(μ_θ(c), diag σ_θ(c)²).

The policy reads the backend's prompt conditioning (token states, pooled vector, mask;
frozen and detached) and outputs a mean and, optionally, a log standard deviation over
the backend's latent shape. Learned queries, one per cell of a ``grid`` x ``grid`` map,
attend to the prompt's tokens; a linear readout turns each cell into per-channel values,
which are upsampled bilinearly to the latent resolution. So the policy expresses
layout ("something red on the left") at little cost, and its output is smooth. The readout
is one map and bias per cell (``readout="cell"``, the default, as for ``noiseppo train``:
docs/noise_ppo.md, "Making the policy learn") or one map shared by every cell (``"shared"``,
which policies saved before the option existed load as: ``SAVED_BEFORE_OPTIONS``).

The readout starts at zero: an untrained policy has μ = 0 and σ = 1 exactly, so its
latents ``μ + σ ⊙ ε`` are bit for bit the standard Gaussian noise ``ε`` of the same seed.
Sampling is reparameterised with ε drawn from the project's seed rule, which is what
pairs "standard" and "policy" images one-to-one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from noiseppo.backends.base import Backend, Conditioning, check_compatible
from noiseppo.configs.train import READOUTS, TrainConfig
from noiseppo.errors import UserError, error_line
from noiseppo.names import closest
from noiseppo.sampling.render import LatentsFn
from noiseppo.sampling.seeds import standard_noise
from noiseppo.storage.safe_load import load_pretrained
from noiseppo.storage.shipped import SHIPPED_POLICIES, shipped_policies

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

LOG_2PI = math.log(2 * math.pi)
Mode = Literal["sample", "mean"]
Reduce = Literal["sum", "mean"]
"""How a per-dimension log-density or KL becomes one number per sample (``TrainConfig.logprob``)."""
POLICY_FIELDS = (
    "grid",
    "width",
    "learn_sigma",
    "log_sigma_max",
    "preserve_variance",
    "query_std",
    "readout",
    "feature_mlp",
    "prompt_blind",
)
"""The ``TrainConfig`` fields that say which policy ``noiseppo train`` builds (``NoisePolicy.for_config``)."""
CONDITIONING_WIDTH = 64
"""The default width of both token states and pooled vector: the Shapes text encoder's."""
SAVED_BEFORE_OPTIONS = {"readout": "shared", "query_std": 0.02}
"""What a policy saved before these options existed was built with. Its config.json lacks the
keys, and diffusers fills a missing key with the constructor's default, which is now
``TrainConfig``'s ("cell", 1.0): ``from_config`` fills these in first, so an old policy loads as
what it was."""


class NoisePolicy(ModelMixin, ConfigMixin):
    """A small diagonal-Gaussian noise policy; see the module docstring."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_shape: Sequence[int] = (3, 32, 32),
        token_dim: int = CONDITIONING_WIDTH,
        pooled_dim: int = CONDITIONING_WIDTH,
        grid: int = 8,
        width: int = 64,
        heads: int = 4,
        learn_sigma: bool = False,
        log_sigma_max: float = 0.5,
        preserve_variance: bool = False,
        query_std: float = 1.0,
        readout: str = "cell",
        feature_mlp: bool = True,
        prompt_blind: bool = False,
        cond_dim: int | None = None,
        tokens: int = 0,
        whitening_ridge: float = 1e-3,
    ):
        """``token_dim`` is the width of the token states (N, L, token_dim) the policy reads, and
        ``pooled_dim`` that of the pooled vector (N, pooled_dim): a backend's ``token_dim`` and
        ``pooled_dim``, which differ in most models (SDXL: 2048 and 1280; FLUX: 4096 and 768).

        ``cond_dim`` is only for policies saved when the policy read one width for both (their
        config.json says ``"cond_dim"``, as the shipped ones do, and has neither ``token_dim`` nor
        ``pooled_dim``): it is read as both widths. New policies leave it None.

        ``tokens`` is the number of token positions the ``"position"`` readout has a map for (the
        backend's padded prompt length; ``for_config`` reads it off the training prompts), and
        ``whitening_ridge`` the ridge of its whitening, relative to each position's largest variance.
        """
        super().__init__()
        if cond_dim is not None:
            if (token_dim, pooled_dim) not in ((CONDITIONING_WIDTH,) * 2, (cond_dim, cond_dim)):
                raise UserError(
                    f"cond_dim {cond_dim} (the one width of policies saved before token_dim and pooled_dim) "
                    f"with token_dim {token_dim} and pooled_dim {pooled_dim}: give one or the other"
                )
            # An old policy's one width was both: its token and pooled projections are cond_dim wide.
            # Its config is saved from now on with the two widths (and cond_dim null).
            token_dim = pooled_dim = cond_dim
            self.register_to_config(token_dim=cond_dim, pooled_dim=cond_dim, cond_dim=None)
        self.latent_shape = tuple(int(d) for d in latent_shape)
        channels = self.latent_shape[0]
        # The cells' only identity is their query. At a std far below the pooled prompt's
        # projection (about 0.55), every cell reads the prompt alike and the first updates can
        # only shift the whole map uniformly; at about 1 the cells differ from the start.
        self.queries = nn.Parameter(torch.randn(grid * grid, width) * query_std)
        self.token_in = nn.Linear(token_dim, width)
        self.pooled_in = nn.Linear(pooled_dim, width)
        self.norm = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)
        self.to_out = nn.Linear(width, width)
        if feature_mlp:
            self.mlp = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
            )
        outputs = channels * (2 if learn_sigma else 1)
        if readout not in READOUTS:
            raise UserError(f"unknown policy readout '{readout}' (known: {', '.join(READOUTS)})")
        # The untrained policy is exactly N(0, I): every head starts at zero.
        if readout == "token":  # each token's features paint a whole map; the prompt's map is their mean
            self.token_mlp = nn.Sequential(nn.GELU(), nn.Linear(width, 2 * width), nn.GELU())
            self.token_map = nn.Linear(2 * width, grid * grid * outputs)
            nn.init.zeros_(self.token_map.weight)
            nn.init.zeros_(self.token_map.bias)
        elif readout == "shared":  # one linear map for every cell
            self.head = nn.Linear(width, outputs)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        elif readout == "position":
            # Each token position whitens its token state with fixed statistics of the training
            # prompts (``fit_token_statistics``) and paints its own linear map; the prompt's map is
            # the sum over its real tokens. Whitened inputs make every direction of the token states
            # learn at the same rate; supervised, this binds words to places in a few dozen steps
            # where the attention takes hundreds (docs/noise_ppo.md, "Binding words to places").
            if tokens < 1:
                raise UserError("the position readout needs tokens >= 1 (NoisePolicy.for_config sets it)")
            k = min(token_dim, width)
            self.register_buffer("token_projection", torch.eye(token_dim, k))
            self.register_buffer("token_mean", torch.zeros(tokens, k))
            self.register_buffer("token_whitening", torch.eye(k).repeat(tokens, 1, 1))
            self.position_maps = nn.Parameter(torch.zeros(tokens, k, grid * grid * outputs))
            self.position_bias = nn.Parameter(torch.zeros(grid * grid, outputs))
        else:  # each cell its own linear read-out of its features, and its own bias (a free map)
            self.cell_weight = nn.Parameter(torch.zeros(grid * grid, width, outputs))
            self.cell_bias = nn.Parameter(torch.zeros(grid * grid, outputs))

    @property
    def sizes(self) -> tuple[tuple[int, ...], int, int]:
        """What the policy was made for: its latent shape, and the widths of the token states and
        pooled vector it reads (``backends.base.check_compatible`` holds them against a model's)."""
        return self.latent_shape, self.config.token_dim, self.config.pooled_dim

    @classmethod
    def from_config(
        cls, config: dict | None = None, return_unused_kwargs: bool = False, **kwargs
    ) -> NoisePolicy | tuple[NoisePolicy, dict]:
        """diffusers' ``from_config`` (which ``load_pretrained`` and ``from_pretrained`` call), with a
        saved config's missing ``SAVED_BEFORE_OPTIONS`` keys read as they were meant."""
        if isinstance(config, dict):
            config = {**SAVED_BEFORE_OPTIONS, **config}
        return super().from_config(config, return_unused_kwargs, **kwargs)

    @classmethod
    def for_backend(cls, backend: Backend, **config) -> NoisePolicy:
        """An untrained policy for ``backend``: its latent shape and conditioning widths, and ``config``."""
        return cls(
            latent_shape=backend.latent_shape, token_dim=backend.token_dim, pooled_dim=backend.pooled_dim, **config
        )

    @classmethod
    def for_config(cls, backend: Backend, config: TrainConfig, conditioning: Conditioning | None = None) -> NoisePolicy:
        """The untrained policy ``noiseppo train`` builds for ``config`` (its policy fields). The
        ``"position"`` readout also takes the training prompts' ``conditioning``: its token count
        and its whitening statistics come from them."""
        fields = {name: getattr(config, name) for name in POLICY_FIELDS}
        if config.readout != "position":
            return cls.for_backend(backend, **fields)
        if conditioning is None:
            raise ValueError("the position readout is fitted to the training prompts' conditioning")
        policy = cls.for_backend(backend, tokens=conditioning.token_states.shape[1], **fields)
        policy.fit_token_statistics(conditioning)
        return policy

    @torch.no_grad()
    def fit_token_statistics(self, conditioning: Conditioning) -> None:
        """Fix the ``"position"`` readout's whitening to the token states of ``conditioning``: a
        projection onto their ``width`` principal directions where they are wider, then, per
        position, the mean and the inverse square root of the covariance (plus a ridge) over the
        prompts that have a real token there. The maps start at zero, so the policy stays N(0, I)."""
        states = conditioning.token_states.to(torch.float64)
        mask = conditioning.mask.to(torch.bool)
        self._check_tokens(states)
        real = states[mask]
        k = self.token_projection.shape[1]
        if k < states.shape[-1]:  # the top-k principal directions of every real token state
            centred = real - real.mean(0)
            _, vectors = torch.linalg.eigh(centred.T @ centred)
            self.token_projection.copy_(vectors[:, -k:].flip(1).to(self.token_projection))
        projection = self.token_projection.to(torch.float64)
        for position in range(states.shape[1]):
            rows = states[mask[:, position], position] @ projection
            if len(rows) < 2:  # no spread seen at this position: leave it unwhitened
                continue
            mean = rows.mean(0)
            values, vectors = torch.linalg.eigh((rows - mean).T @ (rows - mean) / len(rows))
            values = values.clamp(min=0) + self.config.whitening_ridge * values.max().clamp(min=1e-12)
            self.token_mean[position] = mean.to(self.token_mean)
            self.token_whitening[position] = (vectors * values.rsqrt()) @ vectors.T

    def forward(self, conditioning: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log standard deviation, each (N, *latent_shape).

        Rows with the same prompt carry the same conditioning (encoders are deterministic),
        so each distinct prompt is computed once: a PPO batch repeats every prompt
        ``samples_per_prompt`` times.
        """
        first: dict[str, int] = {}
        for i, prompt in enumerate(conditioning.prompts):
            first.setdefault(prompt, i)
        if len(first) == len(conditioning):
            return self._forward(conditioning)
        position = {prompt: k for k, prompt in enumerate(first)}
        inverse = torch.tensor([position[p] for p in conditioning.prompts], device=self.device)
        mean, log_sigma = self._forward(conditioning.select(list(first.values())))
        return mean[inverse], log_sigma[inverse]

    def _forward(self, conditioning: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        states = conditioning.token_states.to(self.device, self.dtype)
        pooled = conditioning.pooled.to(self.device, self.dtype)
        # The conditioning carries no latents: only its widths are checked here.
        check_compatible(self.sizes, self.latent_shape, states.shape[-1], pooled.shape[-1], "the conditioning")
        mask = conditioning.mask.to(self.device, torch.bool)
        n = states.shape[0]
        if cfg.prompt_blind:  # the control: one constant conditioning (one zero token), whatever the prompt
            # (the position readout keeps its positions: the zero token is the first, the rest padding)
            positions = states.shape[1] if cfg.readout == "position" else 1
            states, pooled = states.new_zeros(n, positions, states.shape[-1]), torch.zeros_like(pooled)
            mask = torch.arange(positions, device=mask.device).expand(n, -1) == 0
        if cfg.readout == "position":
            out = self._position_maps(states, mask).view(n, cfg.grid * cfg.grid, -1) + self.position_bias
        elif cfg.readout == "token":
            keys = self.token_in(states)
            # Contextual token states say which role a word plays ("red" before "left of"), so
            # a linear map per token can place each object's colour where its relation puts it.
            maps = self.token_map(self.token_mlp(keys))  # (N, L, grid² x outputs)
            weights = mask.to(maps.dtype)[..., None] / mask.sum(1).clamp(min=1)[:, None, None]
            out = (maps * weights).sum(1).view(n, cfg.grid * cfg.grid, -1)
        else:
            keys = self.token_in(states)
            q = self.queries[None] + self.pooled_in(pooled)[:, None]
            h = q + self._attend(self.norm(q), keys, ~mask)
            if cfg.feature_mlp:
                h = h + self.mlp(h)
            if cfg.readout == "shared":
                out = self.head(h)  # (N, grid², C or 2C)
            else:
                out = torch.einsum("ncw,cwo->nco", h, self.cell_weight) + self.cell_bias
        out = out.transpose(1, 2).reshape(n, -1, cfg.grid, cfg.grid)
        out = F.interpolate(out, size=self.latent_shape[1:], mode="bilinear", align_corners=False).contiguous()
        channels = self.latent_shape[0]
        mean = out[:, :channels].contiguous()
        if cfg.learn_sigma:
            log_sigma = cfg.log_sigma_max * torch.tanh(out[:, channels:])  # bounded: σ ∈ [e^-b, e^b]
        else:
            log_sigma = torch.zeros_like(mean)
        if cfg.preserve_variance:
            # Scale μ and σ by one factor per prompt so that E‖z‖² stays D, the energy of
            # N(0, I) that the frozen model was trained on. At μ = 0, σ = 1 the factor is 1.
            energy = (mean**2 + torch.exp(2 * log_sigma)).flatten(1).mean(1)
            log_scale = (-0.5 * torch.log(energy)).view(-1, *[1] * (mean.dim() - 1))
            mean, log_sigma = mean * torch.exp(log_scale), log_sigma + log_scale
        return mean, log_sigma

    def _position_maps(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The ``"position"`` readout before its bias: (N, grid² x outputs)."""
        self._check_tokens(states)
        x = states @ self.token_projection - self.token_mean
        z = torch.einsum("nlk,lkj->nlj", x, self.token_whitening) * mask[..., None].to(x.dtype)
        return torch.einsum("nlk,lko->no", z, self.position_maps)

    def _check_tokens(self, states: torch.Tensor) -> None:
        if states.shape[1] != self.config.tokens:
            raise UserError(
                f"the conditioning has {states.shape[1]} token positions, the policy was made for {self.config.tokens}"
            )

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Multi-head cross-attention, written out: the same arithmetic with or without grad
        (nn.MultiheadAttention takes a fused path under no-grad, which breaks ratio = 1)."""
        n, heads = q.shape[0], self.config.heads
        k, v = self.to_kv(keys).chunk(2, dim=-1)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(n, x.shape[1], heads, -1).transpose(1, 2)

        q, k, v = split(self.to_q(q)), split(k), split(v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, -1, self.config.width)
        return self.to_out(out)

    def sample(self, conditioning: Conditioning, eps: torch.Tensor) -> torch.Tensor:
        """Reparameterised latents ``μ + σ ⊙ ε`` for the given standard noise ``eps``."""
        return reparameterise(*self(conditioning), eps)

    def log_prob(self, z: torch.Tensor, conditioning: Conditioning, reduce: Reduce) -> torch.Tensor:
        """log π(z | c) per sample, (N,): ``reduce`` "sum" over the latent dimensions is the true
        density, "mean" is the per-dimension convention (``TrainConfig.logprob`` picks training's)."""
        mean, log_sigma = self(conditioning)
        return gaussian_log_prob(z, mean, log_sigma, reduce)

    def kl_to_prior(self, conditioning: Conditioning, reduce: Reduce) -> torch.Tensor:
        """KL(π(·|c) ‖ N(0, I)) per sample, (N,), summed or averaged over the latent dimensions."""
        mean, log_sigma = self(conditioning)
        return gaussian_kl_to_prior(mean, log_sigma, reduce)

    def noise_to_latents(self, mode: Mode = "sample") -> LatentsFn:
        """The hook ``noiseppo.sampling.render.sample`` takes: standard noise ε → the policy's latents."""
        if mode not in ("sample", "mean"):
            raise UserError(f"unknown policy mode '{mode}' (known: sample, mean)")

        @torch.no_grad()
        def fn(conditioning: Conditioning, eps: torch.Tensor) -> torch.Tensor:
            widths = conditioning.token_states.shape[-1], conditioning.pooled.shape[-1]
            check_compatible(self.sizes, eps.shape[1:], *widths, "the input")
            if mode == "mean":
                return self(conditioning)[0].to(eps.device)
            return self.sample(conditioning, eps).to(eps.device)

        return fn

    def latents_for(
        self,
        pipe: DiffusionPipeline,
        prompts: str | Sequence[str],
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        mode: Mode = "sample",
    ) -> torch.Tensor:
        """Initial latents for a diffusers pipeline: ``pipe(prompts, latents=policy.latents_for(pipe,
        prompts, generator=g))``. The prompts are encoded as the pipeline's backend encodes them in
        training (``noiseppo.backends.plugin.backend_for`` finds it by the pipeline's class).

        The standard noise ε is drawn as the pipeline draws its own (``randn_tensor`` with
        ``generator``, in the dtype of its prompt embeddings), so an untrained policy gives that
        call's images; or, with ``seeds``, by noiseppo's seed rule, so the latents pair with
        ``noiseppo sample --seed``. The result is on the pipeline's device, in its dtype, in the
        layout the pipeline takes (packed for FLUX). For a noiseppo backend (the embedded Shapes
        model has no pipeline) the call is ``backend_latents``."""
        from diffusers import DiffusionPipeline
        from diffusers.utils.torch_utils import randn_tensor

        from noiseppo.backends.pipeline import encode_all
        from noiseppo.backends.plugin import backend_for

        if not isinstance(pipe, DiffusionPipeline):
            hint = "; for a noiseppo backend use policy.backend_latents" if hasattr(pipe, "generate") else ""
            raise UserError(f"latents_for takes a diffusers pipeline, got a {type(pipe).__name__}{hint}")
        backend = backend_for(pipe)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        shape = backend.pipeline_latent_shape(pipe)
        check_compatible(self.sizes, shape, *backend.conditioning_widths(pipe), f"the {type(pipe).__name__}")
        if seeds is not None and generator is not None:
            raise UserError("give a generator or seeds, not both")
        if seeds is not None and len(seeds) != len(prompts):
            raise UserError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        conditioning = encode_all(backend, pipe, prompts)
        device, dtype = pipe._execution_device, conditioning.token_states.dtype
        if seeds is not None:
            eps = standard_noise(shape, seeds)
        else:
            eps = randn_tensor((len(prompts), *shape), generator=generator, device=device, dtype=dtype)
        z = self.noise_to_latents(mode)(conditioning, eps).to(device, dtype)
        return backend.pipeline_latents(pipe, z)

    def backend_latents(
        self,
        backend: Backend,
        prompts: str | Sequence[str],
        generator: torch.Generator | None = None,
        seeds: Sequence[int] | None = None,
        mode: Mode = "sample",
    ) -> torch.Tensor:
        """Initial latents for a noiseppo backend (``get_backend("shapes")``, the embedded model),
        for ``backend.generate(latents, backend.encode(prompts), steps, guidance)`` (README, "Python
        API"): ε from ``seeds`` by the seed rule (what ``noiseppo sample`` draws) or from ``generator``."""
        check_policy(self, backend)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if seeds is not None and generator is not None:
            raise UserError("give a generator or seeds, not both")
        if seeds is not None:
            return latents_for_seeds(self, backend, prompts, seeds, mode)
        eps = torch.randn(len(prompts), *backend.latent_shape, generator=generator)
        return self.noise_to_latents(mode)(backend.encode(prompts), eps)


def reparameterise(mean: torch.Tensor, log_sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``μ + σ ⊙ ε``: the latents a policy with this mean and log σ makes from standard noise ``eps``."""
    return mean + torch.exp(log_sigma) * eps.to(mean)


def _reduce(x: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    flat = x.flatten(1)
    return flat.sum(1) if reduce == "sum" else flat.mean(1)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    """Diagonal-Gaussian log-density per sample, summed (true density) or averaged over dimensions."""
    return _reduce(-0.5 * ((z - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * LOG_2PI, reduce)


def gaussian_kl_to_prior(mean: torch.Tensor, log_sigma: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    """Closed-form KL(N(mean, σ²) ‖ N(0, 1)) per sample, summed or averaged over dimensions."""
    return _reduce(0.5 * (torch.exp(2 * log_sigma) + mean**2 - 1) - log_sigma, reduce)


def gaussian_kl(
    mean_p: torch.Tensor, log_sigma_p: torch.Tensor, mean_q: torch.Tensor, log_sigma_q: torch.Tensor
) -> torch.Tensor:
    """Closed-form KL(p ‖ q) of diagonal Gaussians, averaged over dimensions: (N,)."""
    var_ratio = torch.exp(2 * (log_sigma_p - log_sigma_q))
    term = 0.5 * (var_ratio + ((mean_p - mean_q) * torch.exp(-log_sigma_q)) ** 2 - 1) - (log_sigma_p - log_sigma_q)
    return term.flatten(1).mean(1)


def check_policy(policy: NoisePolicy, backend: Backend) -> None:
    """Refuse a policy trained for another model: another latent shape, or conditioning of other
    widths (which tells SD3 and FLUX policies apart where their latent shapes match)."""
    check_compatible(
        policy.sizes, backend.latent_shape, backend.token_dim, backend.pooled_dim, f"backend '{backend.name}'"
    )


def latents_for_seeds(
    policy: NoisePolicy, backend: Backend, prompts: Sequence[str], seeds: Sequence[int], mode: Mode = "sample"
) -> torch.Tensor:
    """The policy's latents for ``prompts[i]`` with the standard noise of ``seeds[i]``."""
    if len(prompts) != len(seeds):
        raise UserError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
    eps = standard_noise(backend.latent_shape, seeds)
    return policy.noise_to_latents(mode)(backend.encode(list(prompts)), eps)


def load_policy(name_or_path: str | Path) -> NoisePolicy:
    """A policy from a run folder (its ``policy/``), a policy folder, or a shipped name."""
    path = Path(name_or_path)
    candidates = [path / "policy", path, SHIPPED_POLICIES / str(name_or_path)]
    for folder in candidates:
        if (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file():
            try:
                return load_pretrained(NoisePolicy, folder).requires_grad_(False)
            except (UserError, OSError, ValueError, RuntimeError) as exc:
                raise UserError(f"{folder}: cannot load the policy: {error_line(exc)}") from None
    shipped = shipped_policies()
    guess = closest(str(name_or_path), shipped)
    hint = f"did you mean '{guess}'? " if guess is not None else ""
    raise UserError(
        f"'{name_or_path}' is neither a run folder, a policy folder nor a shipped policy "
        f"({hint}shipped: {', '.join(shipped) or 'none'})"
    )
