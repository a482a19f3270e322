"""DDPO on a diffusers Stable Diffusion pipeline (``noiseppo ddpo --backend diffusers``): LoRA on the U-Net.

The same DDPO_IS iteration as the Shapes baseline (``noiseppo.baselines.ddpo.ddpo_iteration``: DDIM at
η > 0 with per-step log-probabilities, per-prompt advantages, Noise PPO's clipped surrogate over
the stored steps), with these differences:

- **What trains**: LoRA adapters on the U-Net's attention projections, through diffusers' own peft
  integration (``unet.add_adapter(LoraConfig(...))``); every base weight stays frozen, and the model
  folder is only read. An adapter's B starts at zero, so the untrained run *is* the base model.
- **The model output** is the pipeline's: ``scheduler.scale_model_input``, the U-Net on the prompt
  embeddings, and classifier-free guidance as ``StableDiffusionPipeline`` does it (the unconditional
  embeddings of its ``encode_prompt``, uncond + g·(text − uncond)) when the guidance is above 1,
  in the sampling pass and in the PPO pass alike. The DDIM schedule is built from the pipeline's
  own scheduler config (its betas, timestep spacing and prediction type).
- **Images** are the VAE decode and ``image_processor.postprocess`` of x_0, as the pipeline's.
- **Held-out evaluation** renders through the backend (the pipeline, with its own scheduler, η = 0,
  what ``noiseppo eval`` renders with) once with the adapters disabled and then with them enabled,
  from the same initial noise: each pair differs only by the LoRA.
- **Resume is exact**: a checkpoint after every ``checkpoint_every`` iterations holds the LoRA
  weights, the optimizer, the advantage statistics and the iteration, and every random draw of an
  iteration comes from a generator seeded by (seed, iteration). ``noiseppo ddpo --resume RUN``
  (``noiseppo.baselines.ddpo_resume``) continues it; Ctrl-C checkpoints the last finished iteration.

Refused, with one line: SDXL pipelines (their U-Net also reads pooled text and time ids), LCM U-Nets
(``time_cond_proj_dim``), and the flow-matching backends (``ddpo_settings``).

The run folder::

    config.json    the DDPOConfig, the preset's settings and the model (what --resume reads)
    metrics.jsonl  one row per iteration (the Shapes DDPO's keys, plus time_s and trajectory bytes)
    checkpoint/    noiseppo.storage.checkpoint steps: LoRA weights, optimizer, advantage statistics, iteration
    lora/          pytorch_lora_weights.safetensors (StableDiffusionPipeline.save_lora_weights), which
                   ``pipe.load_lora_weights("RUN/lora")`` loads into the same base pipeline
    ddpo.json      the summary: wall time, peak RSS (and CUDA memory), trajectory bytes, the last row
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from noiseppo.backends import get_backend
from noiseppo.backends.base import Conditioning, resolve_guidance
from noiseppo.backends.diffusers import DiffusersBackend
from noiseppo.baselines.ddpo import batch_line, check_stochastic, ddpo_iteration, run_iterations, summarise
from noiseppo.configs.baselines import DDPOConfig
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.evaluation.sides import PairedSides
from noiseppo.prompts import load_prompts
from noiseppo.rewards import get_reward
from noiseppo.sampling.render import RenderSpec, encode_distinct
from noiseppo.sampling.seeds import EVAL_SEED
from noiseppo.storage.checkpoint import load_training, save_training
from noiseppo.storage.files import replaced_folder, write_atomically
from noiseppo.storage.run_folder import RunFolder
from noiseppo.training.advantages import PerPromptStats

ADAPTER = "default"
"""The peft adapter's name (diffusers' default)."""


def check_pipeline(backend: DiffusersBackend) -> None:
    """Refuse a pipeline this DDPO does not sample as the pipeline would: one line."""
    kind = type(backend.pipe).__name__
    if kind != "StableDiffusionPipeline":
        raise UserError(
            f"DDPO with --backend diffusers takes a StableDiffusionPipeline (SD 1.x/2.x, SD-Turbo); the model is a "
            f"{kind}"
        )
    if backend.pipe.unet.config.time_cond_proj_dim is not None:
        raise UserError("DDPO with --backend diffusers does not take an LCM U-Net (its time_cond_proj_dim is set)")


def lora_config(config: DDPOConfig, unet):
    """The peft ``LoraConfig`` of ``--lora-*``, each target checked against the U-Net's module names."""
    from peft import LoraConfig

    if config.lora_rank < 1:
        raise UserError(f"--lora-rank must be >= 1, got {config.lora_rank}")
    if not 0 < config.lora_alpha < float("inf"):
        raise UserError(f"--lora-alpha must be a finite number > 0, got {config.lora_alpha}")
    targets = [t.strip() for t in config.lora_targets.split(",")]
    names = [name for name, _ in unet.named_modules()]
    for target in targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            raise UserError(
                f"--lora-targets: no module of the U-Net is named '{target}' (e.g. to_q, to_k, to_v, to_out.0, "
                "proj_in, proj_out)"
            )
    # Gaussian A and zero B, as diffusers' LoRA training examples: the untrained adapter adds exactly 0.
    return LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, init_lora_weights="gaussian", target_modules=targets
    )


class DiffusersDDPO:
    """DDPO with LoRA on a diffusers ``StableDiffusionPipeline``; ``step()`` runs one iteration.

    ``backend`` is the pipeline behind noiseppo's backend interface (``DiffusersBackend(pipe,
    "default", device)``, or ``get_backend("diffusers", folder, ...)``); ``config`` the update's
    settings and ``cfg`` the Noise PPO settings it shares (prompts, steps, guidance, samples per
    iteration, advantages, reward), both from ``cfg = ddpo_settings(config, overrides)``, which
    resolves ``config``'s zeros. ``reward`` and ``prompts`` replace ``cfg.reward`` and
    ``cfg.prompts`` when given. The adapters are added to ``backend.pipe.unet`` itself.
    """

    def __init__(
        self,
        backend: DiffusersBackend,
        config: DDPOConfig,
        cfg: TrainConfig,
        reward=None,
        prompts: list[str] | None = None,
    ) -> None:
        from diffusers.training_utils import cast_training_params

        if config.minibatch < 1 or config.lr <= 0:  # a caller's bug, not a user's input
            raise ValueError(
                "resolve the DDPOConfig with noiseppo.baselines.ddpo.ddpo_settings first (its minibatch and lr 0)"
            )
        check_pipeline(backend)
        if config.threads:  # as noiseppo.training.trainer.Trainer: the run's setting
            torch.set_num_threads(config.threads)
        self.backend, self.config, self.cfg = backend, config, cfg
        self.pipe, self.unet = backend.pipe, backend.pipe.unet
        self.latent_shape, self.device, self.dtype = backend.latent_shape, backend.device, backend.dtype
        self.guidance = resolve_guidance(backend, cfg.guidance)
        if not self.guidance >= 0:
            raise UserError(f"guidance must be >= 0, got {self.guidance}")
        self.reward = reward if reward is not None else get_reward(cfg.reward)
        self.prompts = prompts if prompts is not None else load_prompts(cfg.prompts)
        self.eval_prompts = load_prompts(cfg.eval_prompts) if cfg.eval_prompts and config.eval else []
        self.backend.encode(list(dict.fromkeys(self.prompts + self.eval_prompts)))  # refuse bad prompts now
        self.scheduler = DDIMScheduler.from_config(self.pipe.scheduler.config)  # the pipeline's schedule, DDIM
        self.scheduler.set_timesteps(cfg.steps)
        check_stochastic(self.scheduler, config.eta)
        # The pipeline's unconditional embeddings (its encode_prompt with no negative prompt).
        one = self.backend.encode(self.prompts[:1]).token_states
        self.negative = self.pipe.encode_prompt(None, self.device, 1, True, prompt_embeds=one)[1].detach()

        lora = lora_config(config, self.unet)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(config.seed)  # A's Gaussian draw: a function of the seed
            self.unet.add_adapter(lora, adapter_name=ADAPTER)
        cast_training_params(self.unet, dtype=torch.float32)  # fp32 adapters under a bf16/fp16 U-Net
        self.lora_params = [p for p in self.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.lora_params, lr=config.lr, weight_decay=config.weight_decay)
        self.stats = PerPromptStats(cfg.adv_buffer, cfg.adv_min_count, cfg.advantages)
        self.iteration = 0
        self.saved_at: int | None = None  # the iteration of the checkpoint this state was last saved to or loaded from
        self.train_time = 0.0
        self.trajectory_bytes = 0
        self.stochastic_steps = 0
        # The held-out pass: the pipeline with the adapters paired by seed with the base pipeline's side.
        held_out = RenderSpec(cfg.steps, self.guidance, cfg.eval_seeds, EVAL_SEED, config.render_batch)
        self.held_out = PairedSides(self.backend, self.reward, self.eval_prompts, held_out)

    # -- the model DDPO tunes (noiseppo.baselines.ddpo.DDPOModel) --------------------------------------
    def encode(self, prompts: list[str]) -> Conditioning:
        return encode_distinct(self.backend, prompts)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The guided noise (or v) prediction at x_t, as the pipeline computes it, in float32."""
        embeds = cond.token_states.to(self.device, self.dtype)
        model_in = self.scheduler.scale_model_input(x, t).to(self.dtype)
        if self.guidance > 1:  # StableDiffusionPipeline.do_classifier_free_guidance
            both = torch.cat([self.negative.expand(len(x), -1, -1), embeds])
            uncond, text = self.unet(torch.cat([model_in] * 2), t, both, return_dict=False)[0].float().chunk(2)
            return uncond + self.guidance * (text - uncond)
        return self.unet(model_in, t, embeds, return_dict=False)[0].float()

    def images(self, x0: torch.Tensor) -> torch.Tensor:
        """The pipeline's decode of final latents: images in [0, 1], float32."""
        vae = self.pipe.vae
        decoded = vae.decode(x0.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        images = self.pipe.image_processor.postprocess(decoded, output_type="pt", do_denormalize=[True] * len(x0))
        return images.float()

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(self.lora_params)

    # -- one iteration ------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One DDPO iteration; returns its metrics row (``time_s``: this iteration's seconds)."""
        row, traj = ddpo_iteration(
            self, self.optimizer, self.stats, self.reward, self.prompts, self.cfg, self.config, self.iteration
        )
        self.trajectory_bytes, self.stochastic_steps = traj.nbytes_per_sample(), sum(traj.stochastic)
        self.iteration += 1
        self.train_time += row["time_s"]
        return {**row, "train_time_s": self.train_time, "trajectory_bytes_per_sample": self.trajectory_bytes}

    def evaluate(self) -> dict[str, float]:
        """Held-out rewards with the adapters, paired by seed with the base pipeline's ({} without eval prompts)."""
        if not self.eval_prompts:
            return {}
        self.unet.disable_adapters()  # the base pipeline's side, rendered once
        try:
            self.held_out.standard()
        finally:
            self.unet.enable_adapters()
        return self.held_out.row(self.held_out.side(None)[0])

    # -- state on disk ------------------------------------------------------------------------
    def lora_state(self) -> dict[str, torch.Tensor]:
        """The adapters' weights, peft's keys (no adapter name)."""
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.unet, adapter_name=ADAPTER)

    def save(self, run: Path) -> None:
        """Checkpoint the LoRA weights, optimizer, advantage statistics and iteration into ``run/checkpoint``
        (the newest ``keep_checkpoints`` kept)."""
        weights, keep = self.lora_state(), self.cfg.keep_checkpoints
        save_training(
            run / "checkpoint", "lora", weights, self.optimizer, self.stats, self.iteration, keep,
            train_time_s=self.train_time,
        )  # fmt: skip
        self.saved_at = self.iteration

    def load(self, run: Path) -> None:
        """Restore what ``save`` wrote (the newest checkpoint that verifies)."""
        from peft.utils import set_peft_model_state_dict

        def load_lora(lora: dict[str, torch.Tensor]) -> None:
            if set(lora) != set(self.lora_state()):
                raise KeyError("LoRA weights")
            set_peft_model_state_dict(self.unet, lora, adapter_name=ADAPTER)

        meta = load_training(run / "checkpoint", "lora", load_lora, self.optimizer, self.stats, ("train_time_s",))
        self.iteration, self.train_time = int(meta["iteration"]), float(meta["train_time_s"])
        self.saved_at = self.iteration

    def save_lora(self, folder: Path) -> None:
        """The adapters as diffusers writes LoRA weights: ``pipe.load_lora_weights(folder)`` reads them."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers

        StableDiffusionPipeline.save_lora_weights(
            folder,
            unet_lora_layers=convert_state_dict_to_diffusers(self.lora_state()),
            safe_serialization=True,
            unet_lora_adapter_metadata=self.unet.peft_config[ADAPTER].to_dict(),
        )


def train_ddpo_diffusers(
    config: DDPOConfig, cfg: TrainConfig, out: str | Path, model: str, quiet: bool = False, resume: bool = False
) -> dict:
    """DDPO with LoRA into run folder ``out`` (new, or ``resume``d); returns the summary (``out/ddpo.json``).
    Ctrl-C checkpoints the last finished iteration and raises ``Interrupted`` (``noiseppo.storage.run_folder``)."""
    out = Path(out)
    run = RunFolder(out, "config.json", f"noiseppo ddpo --resume {out}")
    if not resume:
        run.refuse_taken("output path exists and is not empty; choose a new one (or --resume it)")
    backend = get_backend("diffusers", model, cfg.scheduler, cfg.device, cfg.dtype)
    ddpo = DiffusersDDPO(backend, config, cfg)  # every input is checked here, before the folder is touched
    if resume:
        ddpo.load(out)
    say = (lambda *a: None) if quiet else print
    say(batch_line(cfg, config) + f", LoRA rank {config.lora_rank} on {len(ddpo.lora_params)} tensors")
    cuda = backend.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(backend.device)
    # The LoRA weights alone, not the U-Net: what an unfinished iteration changed and Ctrl-C puts back.
    state = {"lora": torch.nn.ParameterList(ddpo.lora_params), "optimizer": ddpo.optimizer, "stats": ddpo.stats}
    peak = run_iterations(ddpo, run, config, cfg, model, resume, say, state)
    with replaced_folder(out / "lora") as tmp:
        ddpo.save_lora(tmp)
    summary = summarise(cfg, ddpo, run, peak)
    summary["lora_parameters"] = sum(p.numel() for p in ddpo.lora_params)
    if cuda:
        summary["peak_cuda_mb"] = torch.cuda.max_memory_allocated(backend.device) / 2**20
    write_atomically(out / "ddpo.json", json.dumps(summary, indent=1))
    return summary
