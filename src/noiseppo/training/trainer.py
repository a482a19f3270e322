"""The Noise PPO training loop (``noiseppo train``).

Each iteration: draw prompts, draw standard noise ε, take latents z = μ(c) + σ(c) ⊙ ε
from the policy, render them with the frozen backend, score the images with the
black-box reward, turn rewards into per-prompt advantages, and run the PPO update
(``noiseppo.training.ppo``). Only z, log π_old(z|c) and the advantages are kept.

Every random draw of iteration ``i`` (the prompts, the noise, the minibatch order)
comes from one generator seeded by ``(seed, i)``, so a resumed run repeats exactly what
the uninterrupted run would have done; the generator's state at an iteration boundary
is a function of the iteration, which is why the checkpoint stores the iteration and not
a generator state.

The run folder (``noiseppo.storage.run_folder`` opens it, resumes it, appends the rows, says when a
checkpoint is due and handles Ctrl-C, as for every trainer; ``RunLog`` adds TensorBoard, W&B and the callbacks)::

    config.yaml      the resolved config (what --resume reads)
    metrics.jsonl    one JSON row per iteration (and eval rows)
    tb/              TensorBoard logs
    checkpoint/      step-NNNNNNNN/{state.safetensors, state.json} and latest.json: policy, optimizer,
                     advantage stats, iteration (noiseppo.storage.checkpoint: crash-safe, checksummed)
    policy/          the latest policy (NoisePolicy.save_pretrained), what eval/sample --policy load
    run.json         the git revision and start time (noiseppo.storage.provenance)
    report.html      the run's page, where the caller asks for it (``noiseppo train`` does: ``TrainCallbacks``)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from noiseppo.backends import get_backend
from noiseppo.backends.base import Conditioning, resolve_guidance
from noiseppo.configs.paths import given_comment, with_absolute_paths
from noiseppo.configs.presets import resolve, to_yaml, validate
from noiseppo.configs.schedule import batch_arithmetic, learning_rate, minibatch_size, one_update_per_rollout
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.evaluation.held_out import held_out_line
from noiseppo.evaluation.paired import group_rows
from noiseppo.evaluation.sides import PairedSides
from noiseppo.evaluation.specificity import SIDES as SIDES_CONTROL
from noiseppo.evaluation.specificity import control_notes, held_out_controls
from noiseppo.policy import NoisePolicy, gaussian_log_prob, reparameterise
from noiseppo.prompts import load_prompts, prompt_groups
from noiseppo.rewards import get_reward
from noiseppo.rewards.base import redacted
from noiseppo.rewards.scoring import reward_phase
from noiseppo.sampling.render import RenderSpec, draw_batch, encode_distinct
from noiseppo.sampling.render_and_score import score_chunks
from noiseppo.sampling.seeds import EVAL_SEED, TRAIN_STREAM, sample_seed
from noiseppo.storage.checkpoint import latest_step, load_state, load_training, save_training
from noiseppo.storage.files import replaced_folder
from noiseppo.storage.provenance import write_run_info
from noiseppo.storage.run_folder import RunFolder, checkpoint_due
from noiseppo.training.advantages import PerPromptStats, centre_noises
from noiseppo.training.distributed import Ranks
from noiseppo.training.extend import RunFinished, extended, extension_notice, finished_notice, record_extension
from noiseppo.training.ppo import Rollout, ppo_update


class Timings(dict):
    """Seconds per phase of an iteration, each ``with timings.measure(key):`` adding its own."""

    @contextmanager
    def measure(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[key] = self.get(key, 0.0) + time.perf_counter() - start


def iteration_generator(config: TrainConfig, iteration: int) -> torch.Generator:
    return torch.Generator().manual_seed(sample_seed(config.seed, iteration, TRAIN_STREAM))


class Trainer:
    """Holds the frozen backend, the reward, the policy and its optimizer for one run."""

    def __init__(self, config: TrainConfig):
        validate(config)
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.ranks = Ranks(config.device, config.dist_timeout)
        world = self.ranks.world
        splits = {"prompts_per_iteration": config.prompts_per_iteration, "minibatch": minibatch_size(config)}
        for key, value in splits.items():
            if value % world:
                raise UserError(f"config: {key} {value} does not split over {world} processes")
        device = config.device if world == 1 else str(self.ranks.device)  # one GPU per process
        self.backend = get_backend(config.backend, config.model or None, config.scheduler, device, config.dtype)
        self.guidance = resolve_guidance(self.backend, config.guidance)
        self.reward = get_reward(config.reward)
        self.prompts = load_prompts(config.prompts)
        self.eval_prompts = load_prompts(config.eval_prompts) if config.eval_prompts else []
        self.eval_groups = prompt_groups(config.eval_prompts, self.eval_prompts) if self.eval_prompts else None
        # Refuse prompts outside the backend's language, and a step count or guidance it cannot
        # take (one image, dry run), now, before any file is written.
        everything = list(dict.fromkeys(self.prompts + self.eval_prompts))
        encoded = self.backend.encode(everything)
        with torch.no_grad():
            dry = torch.zeros(1, *self.backend.latent_shape)
            self.backend.generate(dry, self.backend.encode(self.prompts[:1]), config.steps, self.guidance)
        row = {prompt: k for k, prompt in enumerate(everything)}
        torch.manual_seed(config.seed)  # the policy's (non-zero) hidden layers
        # The position readout's whitening is fitted to the training prompts' states (others need none:
        # no copy of a large encoder's states for nothing).
        training = (
            encoded.select([row[p] for p in dict.fromkeys(self.prompts)]) if config.readout == "position" else None
        )
        self.policy = NoisePolicy.for_config(self.backend, config, training).to(device)
        self.optimizer = torch.optim.AdamW(
            self.policy.parameters(), lr=config.lr, betas=(config.adam_beta1, 0.999), weight_decay=config.weight_decay
        )
        self.stats = PerPromptStats(config.adv_buffer, config.adv_min_count, config.advantages)
        self.iteration = 0
        self.saved_at: int | None = None  # the iteration of the checkpoint this state was last saved to or loaded from
        self.show_progress = False  # a held-out pass's own progress bar (noiseppo train sets it unless quiet)
        # The held-out pass's sides, paired by seed; the frozen model's side is rendered once.
        held_out = RenderSpec(
            config.steps, self.guidance, config.eval_seeds, EVAL_SEED, config.render_batch, config.overlap_scoring
        )
        self.held_out = PairedSides(self.backend, self.reward, self.eval_prompts, held_out)
        # A fixed sample of training prompts on which the policy's size is logged.
        # (from the start-up encoding: a second pass of a T5-XXL over the prompts costs minutes on a CPU)
        self._stats_conditioning = encoded.select([row[p] for p in self.prompts[:: max(1, len(self.prompts) // 64)]])

    # -- one iteration ------------------------------------------------------------------
    def rollout(self, generator: torch.Generator) -> tuple[Rollout, dict[str, float]]:
        """Render and score one batch; keep only what the update needs.

        Every rank draws the whole batch's prompts, noise and latents; it renders and scores
        its own slice, and the rewards are gathered (``noiseppo.training.distributed``).
        """
        cfg, ranks = self.config, self.ranks
        prompts, eps = draw_batch(cfg, self.prompts, self.backend.latent_shape, generator)
        # A sample's noise: its index in its prompt's group when the prompts share the noises.
        noise_ids = np.tile(np.arange(cfg.samples_per_prompt), cfg.prompts_per_iteration)

        timings = Timings(time_sampling=0.0, time_reward=0.0, time_reward_wait=0.0)
        with timings.measure("time_sampling"), torch.no_grad():
            cond = encode_distinct(self.backend, prompts)
            mean, log_sigma = self.policy(cond)  # once: the latents, their log-probability and the update's π_old
            latents = reparameterise(mean, log_sigma, eps)
            old_logprob = gaussian_log_prob(latents, mean, log_sigma, cfg.logprob)

        local_reward, local_fields = ranks.run(partial(self.score_rollout, latents, cond, prompts, timings))
        reward = ranks.gather(local_reward.to(ranks.device)).cpu()
        fields = {k: ranks.gather(v.to(ranks.device)).cpu() for k, v in sorted(local_fields.items())}

        finite = torch.isfinite(reward)
        dropped = int((~finite).sum())
        if dropped > cfg.max_nan_fraction * len(reward):
            raise UserError(
                f"reward '{redacted(cfg.reward)}', training iteration {self.iteration + 1}: NaN for {dropped} of "
                f"{len(reward)} images (max_nan_fraction is {cfg.max_nan_fraction})"
            )
        keep = finite.nonzero().flatten()
        # A prompt's group is its conditioning's text (``Conditioning.prompts``), as DDPO's is.
        kept_prompts = [cond.prompts[i] for i in keep.tolist()]
        advantages, adv_info = self.stats.advantages(kept_prompts, reward[keep].numpy())
        if cfg.noise_centring:  # the noise's main effect out too: what is left depends on the prompt
            advantages = centre_noises(advantages, noise_ids[keep.numpy()], cfg.noise_centring)
        full = Rollout(cond, latents, old_logprob, torch.zeros(len(prompts)), mean, log_sigma)
        rollout = full.take(keep)
        rollout.advantages = torch.as_tensor(advantages, dtype=torch.float32, device=rollout.latents.device)

        info = {
            "reward_mean": float(reward[keep].mean()),
            "reward_std": float(reward[keep].std()) if len(keep) > 1 else 0.0,
            "nan_rewards": float(dropped),
            **adv_info,
            **timings,
        }
        for key, values in fields.items():
            info[f"train_{key}"] = float(np.nanmean(values.numpy()))
        return rollout, info

    def score_rollout(
        self, latents: torch.Tensor, cond: Conditioning, prompts: list[str], timings: Timings
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """This rank's share of the batch: rendered ``render_batch`` images at a time, each chunk
        scored while the next one renders (``overlap_scoring``). Returns the rewards and the
        reward's numeric details (Shapes: correct, partial), in batch order."""
        cfg = self.config
        mine = self.ranks.share(len(prompts))
        chunks = (
            range(i, min(i + cfg.render_batch, mine.stop)) for i in range(mine.start, mine.stop, cfg.render_batch)
        )

        def render(chunk: range) -> tuple[list[str], torch.Tensor]:  # on this thread: iterating renders
            with timings.measure("time_sampling"), torch.no_grad():
                images = self.backend.generate(
                    latents[chunk.start : chunk.stop], cond.select(chunk), cfg.steps, self.guidance
                )
                return prompts[chunk.start : chunk.stop], images

        rendered_before = timings["time_sampling"]
        # Iterations count from 1, as metrics.jsonl does: this is the row this rollout will write.
        with (
            timings.measure("time_reward_wait"),
            reward_phase(redacted(cfg.reward), f"training iteration {self.iteration + 1}"),
        ):
            # the reward's own time is timed where it runs: on the scoring thread when overlapped
            rewards, fields = score_chunks(
                map(render, chunks), self.reward, cfg.overlap_scoring, partial(timings.measure, "time_reward")
            )
        # What the run waited for the reward: the loop's time less the rendering (with overlap on,
        # only the scoring that rendering could not hide).
        timings["time_reward_wait"] -= timings["time_sampling"] - rendered_before
        return rewards, {k: torch.from_numpy(v) for k, v in fields.items()}

    def step(self) -> dict[str, float]:
        """One PPO iteration: rollout, advantages, update. Returns the metrics row."""
        cfg = self.config
        generator = iteration_generator(cfg, self.iteration)
        start = time.perf_counter()
        rollout, row = self.rollout(generator)
        t0 = time.perf_counter()
        lr = learning_rate(cfg, self.iteration)
        for group in self.optimizer.param_groups:  # a function of the iteration: a resume repeats it exactly
            group["lr"] = lr
        row["lr"] = lr
        self.policy.train()
        row.update(ppo_update(self.policy, self.optimizer, rollout, cfg, generator, self.ranks))
        self.policy.eval()
        row["time_update"] = time.perf_counter() - t0
        row.update(self.policy_stats())
        if self.ranks.world > 1:  # every rank must hold the very same policy after the update
            fingerprint = torch.cat([p.detach().double().flatten() for p in self.policy.parameters()])
            fingerprint = (fingerprint * torch.linspace(1, 2, len(fingerprint), dtype=torch.float64)).sum()
            every = self.ranks.gather(fingerprint.reshape(1).to(self.ranks.device))
            row["rank_param_spread"] = float(every.max() - every.min())
        row["samples_per_s"] = cfg.prompts_per_iteration * cfg.samples_per_prompt / (time.perf_counter() - start)
        self.iteration += 1
        return {"iteration": self.iteration, **row}

    @torch.no_grad()
    def policy_stats(self) -> dict[str, float]:
        """Size of the learned mean and σ on a fixed sample of training prompts."""
        mean, log_sigma = self.policy(self._stats_conditioning)
        return {
            "mu_rms": float(mean.pow(2).mean().sqrt()),
            "mu_norm": float(mean.flatten(1).norm(dim=1).mean()),
            "sigma_mean": float(torch.exp(log_sigma).mean()),
        }

    # -- held-out evaluation --------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Reward (and the reward's details) on the held-out prompts, standard vs policy noise,
        with the paired difference's 95% cluster-bootstrap interval (``eval_delta_*_ci95_*``)."""
        cfg = self.config
        if not self.eval_prompts:
            return {}

        label = f"held-out pass after iteration {self.iteration}" if self.show_progress else None
        phase = f"held-out pass after iteration {self.iteration}"
        with reward_phase(redacted(cfg.reward), phase):
            standard = self.held_out.standard(progress=label and f"{label}: standard noise")
            # At iteration 0 the policy is the untrained one, whose latents are the standard noise bit
            # for bit (tested): its side is the standard side, and no control can differ from it.
            untrained = self.iteration == 0
            if untrained:
                policy_side = standard
            else:
                latents = self.policy.noise_to_latents("sample")
                policy_side = self.held_out.side(latents, progress=label and f"{label}: policy")[0]
        for side, metrics in (("standard noise", standard), ("policy", policy_side)):  # as training counts NaN
            dropped = int(np.isnan(metrics["reward"]).sum())
            if dropped > cfg.max_nan_fraction * len(metrics["reward"]):
                raise UserError(
                    f"reward '{redacted(cfg.reward)}', {phase}: NaN for {dropped} of {len(metrics['reward'])} "
                    f"{side} images (max_nan_fraction is {cfg.max_nan_fraction})"
                )
        row = self.held_out.row(policy_side)
        row["eval_nan_rewards"] = float(np.isnan(policy_side["reward"]).sum() + np.isnan(standard["reward"]).sum())
        if self.eval_groups is not None and len(set(self.eval_groups)) > 1:  # where the gain comes from
            row.update(group_rows(standard, policy_side, self.held_out.clusters, self.eval_groups))
        if cfg.eval_specificity and not untrained:  # own - other, own - mirror: does the gain depend on the prompt?
            with reward_phase(redacted(cfg.reward), phase):
                specific = self.held_out.specificity(self.policy, policy_side, progress=label)
            row.update({f"eval_{k}": v for k, v in specific.items()})
        return row

    # -- state on disk -------------------------------------------------------------------
    def save(self, run: Path) -> None:
        """Checkpoint the policy, optimizer, advantage statistics and iteration; and the policy
        as a folder ``load_policy`` reads (``run/policy``)."""
        cfg = self.config
        state = self.policy.state_dict()
        save_training(
            run / "checkpoint", "policy", state, self.optimizer, self.stats, self.iteration, cfg.keep_checkpoints
        )
        with replaced_folder(run / "policy") as tmp:
            self.policy.save_pretrained(tmp)
        self.saved_at = self.iteration

    def load(self, run: Path) -> None:
        """Restore what ``save`` wrote (the newest checkpoint that verifies)."""
        meta = load_training(run / "checkpoint", "policy", self.policy.load_state_dict, self.optimizer, self.stats)
        self.iteration = self.saved_at = int(meta["iteration"])


def _open_run(run: RunFolder, resume: bool) -> TrainConfig | None:
    """Refuse what cannot be opened; returns a resumed run's config.yaml (None for a new run)."""
    if resume:
        if not run.path.exists():
            raise UserError(f"{run.path}: run folder does not exist")
        run.refuse_unresumable("not a run folder to resume (needs config.yaml and checkpoint/)")
        return resolve(config_file=str(run.config))
    run.refuse_taken("run folder exists and is not empty; use --resume or a new folder")
    return None


class RunLog:
    """What rank 0 writes into the run folder (``noiseppo.storage.run_folder``): config.yaml and
    run.json at the start, then per iteration the held-out pass when due, the metrics row
    (metrics.jsonl, TensorBoard, W&B), the checkpoint when due and the callbacks' ``on_start`` and
    ``on_checkpoint``."""

    def __init__(self, run: RunFolder, trainer: Trainer, quiet: bool, callbacks: Sequence[TrainCallbacks] = ()):
        self.run, self.trainer, self.quiet, self.callbacks = run, trainer, quiet, callbacks
        self.writer = self.wandb_run = None
        self.held_out_s = 0.0  # the last iteration's held-out pass, which the progress bar's rate leaves out

    def open(
        self, resume: bool, recorded: TrainConfig, on_disk: TrainConfig | None, paths_comment: str = ""
    ) -> dict[str, float] | None:
        """Set the folder up (or take it up again); returns the untrained policy's held-out row.
        ``recorded``: what config.yaml holds; ``on_disk``: a resumed run's config.yaml before an
        extension; ``paths_comment``: comment lines to write above a new run's config
        (``configs.paths.given_comment``)."""
        run, trainer, config = self.run, self.trainer, self.trainer.config
        for callback in self.callbacks:
            callback.on_start(run.path, trainer)
        first_row = {"iteration": 0, **trainer.evaluate()} if not resume and config.eval_prompts else None
        if not resume:
            run.write_config(paths_comment + to_yaml(recorded))
            write_run_info(run.path)  # the git revision, for the report
            trainer.save(run.path)  # iteration 0: the untrained policy, so --resume works from the start
        run.resumed_at("iteration", trainer.iteration)  # a killed run's rows after its checkpoint go
        if on_disk is not None and on_disk.iterations != config.iterations:
            record_extension(run.path, on_disk, config, trainer.iteration, to_yaml(recorded))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run.path / "tb"), purge_step=trainer.iteration + 1)
        self.wandb_run = _start_wandb(config, run.path) if config.wandb else None
        if first_row is not None:  # the untrained policy: exactly the frozen model's own noise
            self.log(first_row)
            if not self.quiet:
                print(held_out_line(first_row))
        return first_row

    def finish_iteration(self, row: dict[str, float]) -> dict[str, float] | None:
        """After ``trainer.step()``: returns the held-out row if a pass was due."""
        trainer, config = self.trainer, self.trainer.config
        done, evaluated, t0 = trainer.iteration, None, time.perf_counter()
        if (config.eval_every and done % config.eval_every == 0) or done == config.iterations:
            evaluated = trainer.evaluate()  # {} without held-out prompts
            if evaluated:
                evaluated["time_eval"] = time.perf_counter() - t0
            row.update(evaluated)
        self.log(row)
        if evaluated:  # the last one's line is the held-out table, printed at the end
            _show_held_out(self.writer, trainer, row, self.quiet or done == config.iterations)
        self.held_out_s = time.perf_counter() - t0 if evaluated is not None else 0.0
        if checkpoint_due(done, config.checkpoint_every, config.iterations):
            trainer.save(self.run.path)
            if done < config.iterations:  # the last checkpoint's callback is on_end
                for callback in self.callbacks:
                    callback.on_checkpoint(self.run.path, trainer)
        return evaluated

    def log(self, row: dict[str, float]) -> None:
        """One row: metrics.jsonl (null for a non-finite value), TensorBoard and W&B."""
        row["time_wall"] = self.run.clock()
        written = self.run.append(row)
        step = int(row["iteration"])
        for key, value in written.items():
            if key != "iteration" and value is not None:
                self.writer.add_scalar(key, value, step)
        self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


class TrainCallbacks(Protocol):
    """What ``train`` calls on rank 0, beside writing the run folder: at the start (before the
    untrained policy's held-out pass), after each checkpoint but the last, and at the end. The CLI
    passes the run's page (``noiseppo.report.page.TrainPage``), which training does not import."""

    def on_start(self, out: Path, trainer: Trainer) -> None: ...

    def on_checkpoint(self, out: Path, trainer: Trainer) -> None: ...

    def on_end(self, out: Path, trainer: Trainer) -> str | None:
        """Returns a line for the terminal (printed unless quiet), or None."""
        ...


def train(
    config: TrainConfig | None,
    out: str | Path,
    resume: bool = False,
    quiet: bool = False,
    iterations: int | None = None,
    callbacks: Sequence[TrainCallbacks] = (),
) -> Path:
    """Train a noise policy into run folder ``out`` (or resume it); returns ``out``.

    ``iterations`` (with ``resume``) extends the run to that many iterations
    (``noiseppo.training.extend``); a resumed run that has done all of its iterations raises
    ``RunFinished``. Ctrl-C checkpoints the last finished iteration and raises
    ``Interrupted`` (``noiseppo.storage.run_folder``).

    Under ``accelerate launch`` every process runs this; rank 0 alone evaluates, logs and
    writes, inside ``ranks.run`` so that its failure stops every rank with its message.
    """
    out = Path(out)
    run = RunFolder(out, "config.yaml", f"noiseppo train --resume {out}")  # its wall clock starts now
    on_disk = _open_run(run, resume)  # a resumed run's config.yaml, as saved
    paths_comment = ""  # a new run's config.yaml: the comment line that keeps the paths as the user typed them
    if on_disk is None:
        assert config is not None
        typed, config = config, with_absolute_paths(config)  # then the run works from any folder
        paths_comment = given_comment(typed, config)
    else:
        config = extended(on_disk, iterations, out) if iterations is not None else on_disk
    if resume and (latest_step(run.checkpoints) or 0) >= config.iterations:
        # Finished, if its checkpoint verifies (else load_state refuses it, or falls back to an
        # older step and the run goes on): said before the backend loads, there is nothing to do.
        done = int(load_state(run.checkpoints)[1]["iteration"])
        if done >= config.iterations:
            raise RunFinished(finished_notice(out, done))
    trainer = Trainer(config)  # every input is checked here, before the folder is touched
    ranks = trainer.ranks
    if resume:
        trainer.load(out)
    quiet = quiet or not ranks.is_main
    trainer.show_progress = not quiet
    say = (lambda *a: None) if quiet else print
    # config.yaml holds the guidance the run uses, not None for "the backend's default".
    recorded = dataclasses.replace(config, guidance=trainer.guidance)
    if on_disk is not None and on_disk.iterations != config.iterations:
        say(extension_notice(out, on_disk, config, trainer.iteration))
    say(batch_arithmetic(config, trainer.guidance, ranks.world))
    if len(trainer.prompts) < config.prompts_per_iteration:
        say(
            f"prompts: '{config.prompts}' has {len(trainer.prompts)}, fewer than prompts_per_iteration "
            f"{config.prompts_per_iteration}: each iteration draws {config.prompts_per_iteration} with replacement "
            "(a prompt drawn twice is one group of twice the samples)"
        )
    if not config.eval_prompts:
        say("no held-out pass: eval_prompts is empty (give eval_prompts=FILE, prompts the policy never trains on)")

    log = RunLog(run, trainer, quiet, callbacks)
    # Rank 0 alone evaluates, logs and writes, inside ranks.run: its failure stops every rank with its message.
    opening = partial(log.open, resume, recorded, on_disk, paths_comment)
    last_eval = ranks.run(opening if ranks.is_main else lambda: None)

    one_update = one_update_per_rollout(config)
    # leave=False: an error mid-run leaves its one line on a clean terminal, not after a bar.
    with tqdm(total=config.iterations, initial=trainer.iteration, disable=quiet, desc="noise ppo", leave=False) as bar:
        while trainer.iteration < config.iterations:
            # Ctrl-C or a failure in the iteration: the last finished one is checkpointed (run_folder).
            state = {"policy": trainer.policy, "optimizer": trainer.optimizer, "stats": trainer.stats}
            with run.iteration(trainer, config.iterations, ranks.is_main, **state) as finished:
                row = trainer.step()  # every rank: rollout, advantages, PPO update
                # rank 0: the held-out pass when due, the row, the checkpoint when due
                evaluated = ranks.run(partial(log.finish_iteration, row) if ranks.is_main else lambda: None)
                finished()  # logged (and checkpointed if due): the iteration counts
                last_eval = evaluated or last_eval
                _show_progress(bar, row, log.held_out_s, one_update)
    if not quiet and config.eval_prompts:
        print(held_out_table(last_eval or trainer.evaluate(), config))
    for callback in callbacks if ranks.is_main else ():
        if line := callback.on_end(out, trainer):
            say(line)
    log.close()
    return out


def _show_progress(bar: tqdm, row: dict[str, float], held_out_s: float, one_update: bool) -> None:
    """One more iteration on the bar, with its reward (and its KL and clip fraction, unless an
    iteration takes one update only: then they are 0 by construction, as the batch line says)."""
    if not bar.disable:  # the rate and the ETA count training iterations only
        bar.start_t += held_out_s
        bar.last_print_t += held_out_s
    bar.update(1)
    fields = {"reward": f"{row['reward_mean']:.3f}"}
    if not one_update:
        fields.update(kl=f"{row['policy_kl']:.1e}", clip=f"{row['clipfrac']:.2f}")
    bar.set_postfix(fields)


def held_out_table(row: dict[str, float], cfg: TrainConfig) -> str:
    """Before (standard noise) and after (policy samples) on the held-out prompts, same seeds,
    with the paired difference's 95% cluster-bootstrap interval (resampling prompts); then the
    prompt-specificity controls, own - other and own - mirror (``noiseppo.evaluation.specificity``)."""
    measured = [side for side in SIDES_CONTROL if f"eval_{side}_pairs" in row]
    lines = [
        f"held-out {cfg.eval_prompts}, {cfg.eval_seeds} seed(s) per prompt ({row['eval_pairs']:.0f} pairs), "
        f"{cfg.steps} steps:",
        f"{'':<10}{'standard':>10}{'policy':>10}{'delta':>10}{'95% CI':>20}"
        + "".join(f"{f'own-{side} [95% CI]':>33}" for side in SIDES_CONTROL if measured),
    ]
    for key in (k[len("eval_standard_") :] for k in row if k.startswith("eval_standard_")):
        before, after = row[f"eval_standard_{key}"], row[f"eval_{key}"]
        ci = f"[{row[f'eval_delta_{key}_ci95_low']:+.3f}, {row[f'eval_delta_{key}_ci95_high']:+.3f}]"
        line = f"{key:<10}{before:>10.3f}{after:>10.3f}{after - before:>+10.3f}{ci:>20}"
        cells = held_out_controls(row, key)
        lines.append(line + "".join(f"{cells[side]:>33}" for side in SIDES_CONTROL if cells))
    if measured:
        pairs = ", ".join(f"own - {side} {row[f'eval_{side}_pairs']:.0f}" for side in measured)
        lines += [*control_notes(), f"pairs: {pairs}"]
    return "\n".join(lines)


def _show_held_out(writer, trainer: Trainer, row: dict[str, float], quiet: bool) -> None:
    """A periodic held-out evaluation as one line above the progress bar and, in TensorBoard
    beside its scalars, as sample images: standard noise against the policy (noiseppo.evaluation.showcase)."""
    from noiseppo.evaluation import showcase
    from noiseppo.evaluation.grid import prompt_grid

    if not quiet:
        tqdm.write(held_out_line(row))
    cfg, step = trainer.config, int(row["iteration"])
    spec = RenderSpec(cfg.steps, trainer.guidance, showcase.SEEDS, EVAL_SEED)
    blocks = showcase.side_by_side(trainer.backend, trainer.policy, trainer.reward, trainer.eval_prompts, spec)
    grid = prompt_grid(blocks, f"iteration {step}: standard noise | policy, same seed (held-out prompts)")
    writer.add_image("held_out/standard_vs_policy", np.asarray(grid), step, dataformats="HWC")


def _start_wandb(cfg: TrainConfig, out: Path):
    try:
        import wandb
    except ImportError:
        raise UserError("wandb=true needs the wandb package (pip install wandb)") from None
    return wandb.init(project="noiseppo", name=out.name, dir=str(out), config=dataclasses.asdict(cfg))
