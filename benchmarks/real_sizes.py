"""Noise PPO's cost at real model sizes (random weights), beside pure sampling.

    python benchmarks/real_sizes.py [--models sd-turbo,sdxl-turbo,flux-schnell] [--device cpu]
        [--dtype float32] [--resolution 256] [--prompts-per-iteration 1] [--samples-per-prompt 2]
        [--steps 1] [--repeats 3] [--methods noise-ppo] [--work DIR]
    # full size on a GPU (benchmarks/cuda_checks.sh runs these):
    python benchmarks/real_sizes.py --models sd-turbo --device cuda --dtype bfloat16 --resolution 512 \
        --prompts-per-iteration 2 --samples-per-prompt 4
    python benchmarks/real_sizes.py --models flux-schnell --full-depth --steps 4 --resolution 1024 ...

For each model, benchmarks/random_pipelines.py builds the random-weight pipeline in the real
architecture (FLUX at reduced depth) and saves it; a random CLIP ViT-H/14 (PickScore's
architecture) is saved too. Then each measurement runs in a subprocess of its own, since peak
RSS is a process's:

- ``sampling``: the backend alone renders the batch with standard noise (encode, noise,
  render): images/s and peak memory of sampling alone;
- ``noise-ppo``: ``noiseppo.training.trainer.Trainer`` (what ``noiseppo train`` runs) with the JPEG
  reward, so that nearly all of an iteration is the model: whole PPO iterations alternate
  with pure sampling of the same number of images, prompts and steps in the same process
  (benchmarks/overhead.py's clocks), ``--repeats`` times, medians compared; the policy's
  parameter count and its forward time against one generation of the batch; peak memory;
- ``pickscore``: the same Trainer with ``pickscore@FOLDER`` (the random CLIP-H): seconds per
  iteration, the reward's time against rendering, peak memory (what a user of PickScore pays).

Goals (issue 27): ``train_over_sampling`` >= 0.95, ``policy_over_generation`` <= 0.01,
``memory_over_sampling`` <= 1.1 (lifetime peaks, loading and start-up included;
``loop_memory_over_sampling`` compares the peaks while rendering or iterating only).
``--methods ddpo`` is the hook for the DDPO row (``ddpo_phase``). A measurement that fails is
reported with its error. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from noiseppo.memory import PeakRSS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

GUIDANCE = {"sd-turbo": 1.0, "sdxl-turbo": 1.0, "flux-schnell": 0.0}
"""The Turbo models and FLUX.1-schnell are distilled to render without classifier-free guidance."""
BACKEND = {"sd-turbo": "diffusers", "sdxl-turbo": "diffusers", "flux-schnell": "flux"}
GOALS = {"train_over_sampling": 0.95, "policy_over_generation": 0.01, "memory_over_sampling": 1.1}
GB = 1e9


# -- measurements, each run in a process of its own ----------------------------------------------
def peak_rss_bytes() -> int:
    """The process's lifetime peak resident set (loading included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory(device: str) -> dict[str, float]:
    """Peak RSS, and peak CUDA memory allocated by torch on a GPU."""
    import torch

    out = {"peak_rss_gb": peak_rss_bytes() / GB}
    if device.startswith("cuda"):
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / GB
    return out


def train_config(args: argparse.Namespace, model: str, reward: str):
    """The TrainConfig of ``noiseppo train --backend ... --model FOLDER``: one batch of the stated size."""
    from noiseppo.configs.presets import resolve

    overrides = [
        f"backend={BACKEND[model]}", f"model={args.model_folder}", f"reward={reward}", f"prompts={args.prompts}",
        f"steps={args.steps}", f"guidance={GUIDANCE[model]}", f"device={args.device}", f"dtype={args.dtype}",
        f"prompts_per_iteration={args.prompts_per_iteration}", f"samples_per_prompt={args.samples_per_prompt}",
        f"render_batch={args.render_batch or args.prompts_per_iteration * args.samples_per_prompt}",
        "eval_prompts=", "minibatch=0", f"threads={args.threads}",
    ]  # fmt: skip
    return resolve("shapes", overrides=overrides)


def sampling_phase(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Pure sampling: the backend alone, standard noise, the batch Noise PPO renders per iteration."""
    import torch

    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.prompts import load_prompts
    from overhead import render_clock

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = get_backend(BACKEND[model], str(args.model_folder), "default", args.device, args.dtype)
    guidance = resolve_guidance(backend, GUIDANCE[model])
    prompts = [
        p for p in load_prompts(args.prompts)[: args.prompts_per_iteration] for _ in range(args.samples_per_prompt)
    ]
    sampling = render_clock(backend, prompts, args.steps, guidance, args.render_batch or len(prompts), args.device)
    sampling()  # warm-up
    with PeakRSS() as peak:
        times = [sampling() for _ in range(args.repeats)]
    return {"sampling_s": statistics.median(times), "images_per_s": len(prompts) / statistics.median(times),
            "times_s": times, "loop_peak_rss_gb": peak.peak_bytes / GB}  # fmt: skip


def noise_ppo_phase(args: argparse.Namespace, model: str, reward: str = "jpeg_compressibility") -> dict[str, Any]:
    """Whole PPO iterations (``Trainer.step``) against pure sampling in the same process, alternated;
    the policy's size and forward time."""

    from noiseppo.training.trainer import Trainer
    from overhead import policy_clock, sampling_clock, training_clock

    trainer = Trainer(train_config(args, model, reward))
    policy, backend, cfg = trainer.policy, trainer.backend, trainer.config
    sampling, training = sampling_clock(trainer), training_clock(trainer)
    prompts = [p for p in trainer.prompts[: cfg.prompts_per_iteration] for _ in range(cfg.samples_per_prompt)]
    policy_forward = policy_clock(trainer, prompts)
    cond = backend.encode(prompts[:1])  # the widths and token count the policy reads, for the row

    rows = [trainer.step()]  # warm-up: first calls pay for allocation
    sampling(), policy_forward()
    times: dict[str, list[float]] = {"sampling": [], "training": [], "policy": []}
    with PeakRSS() as peak:  # while iterating: the lifetime peak also holds start-up's
        for _ in range(args.repeats):
            times["sampling"].append(sampling())
            times["training"].append(training())
            times["policy"].extend(policy_forward() for _ in range(5))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "reward": reward,
        "policy_parameters": sum(p.numel() for p in policy.parameters()),
        "token_dim": int(cond.token_states.shape[-1]),
        "pooled_dim": int(cond.pooled.shape[-1]),
        "tokens": int(cond.token_states.shape[1]),
        "latent_shape": list(backend.latent_shape),
        "sampling_s": med["sampling"],
        "iteration_s": med["training"],
        "policy_forward_s": med["policy"],
        "train_over_sampling": med["sampling"] / med["training"],
        "policy_over_generation": med["policy"] / med["sampling"],
        "first_iteration": {k: v for k, v in rows[0].items() if k.startswith("time_")},
        "pairs_s": list(zip(times["sampling"], times["training"], strict=True)),  # (sampling, training) in turn
        "loop_peak_rss_gb": peak.peak_bytes / GB,
    }


def pickscore_phase(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Training with a real-size reward: a random CLIP ViT-H/14 loaded as ``pickscore@FOLDER``."""
    from noiseppo.training.trainer import Trainer

    trainer = Trainer(train_config(args, model, f"pickscore@{args.pickscore_folder}"))
    trainer.step()  # warm-up
    rows, iteration = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        rows.append(trainer.step())
        iteration.append(time.perf_counter() - start)
    render = statistics.median(r["time_sampling"] for r in rows)
    score = statistics.median(r["time_reward"] for r in rows)
    return {"iteration_s": statistics.median(iteration), "render_s": render, "reward_s": score,
            "reward_over_render": score / render}  # fmt: skip


def ddpo_phase(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """DDPO with LoRA on the same pipeline (``noiseppo ddpo --backend diffusers``: ``DiffusersDDPO``,
    one iteration = sample with DDIM at eta 1 storing the trajectory, score, PPO over the stored
    steps with gradients through the U-Net), with the prompts, samples per iteration, steps and
    reward of ``noise_ppo_phase``; ``run_phase`` adds the peak memory. DDPO needs a stochastic
    step: at 1 step DDIM's only step is deterministic, so compare both at ``--steps 2``."""
    import torch

    from noiseppo.backends import get_backend
    from noiseppo.baselines.ddpo import ddpo_settings
    from noiseppo.baselines.ddpo_diffusers import DiffusersDDPO
    from noiseppo.configs.baselines import DDPOConfig
    from overhead import render_clock

    batch = args.prompts_per_iteration * args.samples_per_prompt
    config = DDPOConfig(preset="shapes", minibatch=batch, render_batch=args.render_batch or batch,
                        threads=args.threads, eval=False)  # fmt: skip
    overrides = [f"{k}={v}" for k, v in vars(train_config(args, model, "jpeg_compressibility")).items()
                 if k in ("backend", "model", "reward", "prompts", "steps", "guidance", "device", "dtype",
                          "prompts_per_iteration", "samples_per_prompt", "eval_prompts") and v is not None]  # fmt: skip
    cfg = ddpo_settings(config, tuple(overrides))
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = get_backend("diffusers", str(args.model_folder), "default", args.device, args.dtype)
    ddpo = DiffusersDDPO(backend, config, cfg)
    # Pure sampling of the same batch in the same process, alternated with DDPO's iterations: the
    # ratio is what compares with noise_ppo_phase's (seconds in different processes are not, here).
    prompts = [p for p in ddpo.prompts[: args.prompts_per_iteration] for _ in range(args.samples_per_prompt)]
    sampling = render_clock(backend, prompts, cfg.steps, ddpo.guidance, config.render_batch, args.device)
    sampling()  # warm-up; no DDPO warm-up: one iteration is minutes here
    rows, times, samplings = [], [], []
    for _ in range(max(1, args.ddpo_iterations)):
        samplings.append(sampling())
        start = time.perf_counter()
        rows.append(ddpo.step())
        times.append(time.perf_counter() - start)
    return {
        "iteration_s": statistics.median(times),
        "sampling_s": statistics.median(samplings),
        "iteration_over_sampling": statistics.median(times) / statistics.median(samplings),
        "times_s": times,
        "trajectory_bytes_per_sample": rows[-1]["trajectory_bytes_per_sample"],
        "lora_parameters": sum(p.numel() for p in ddpo.unet.parameters() if p.requires_grad),
    }


PHASES = {"sampling": sampling_phase, "noise-ppo": noise_ppo_phase, "pickscore": pickscore_phase, "ddpo": ddpo_phase}


def run_phase(args: argparse.Namespace) -> None:
    """``--phase NAME``: one measurement, in this process; its last line is its JSON."""
    import torch

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = PHASES[args.phase](args, args.model)
    print(json.dumps(result | memory(args.device)))


# -- the driver ---------------------------------------------------------------------------------
def child(args: argparse.Namespace, extra: list[str], log: Path) -> dict[str, Any]:
    """Run this script with ``extra`` arguments in a subprocess; its last line's JSON, or its error."""
    argv = [sys.executable, __file__, *extra, "--device", args.device, "--dtype", args.dtype]
    argv += ["--prompts", args.prompts, "--steps", str(args.steps), "--repeats", str(args.repeats)]
    argv += ["--prompts-per-iteration", str(args.prompts_per_iteration)]
    argv += ["--samples-per-prompt", str(args.samples_per_prompt), "--render-batch", str(args.render_batch)]
    argv += ["--threads", str(args.threads), "--resolution", str(args.resolution)]
    start = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(done.stdout)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines or not lines[-1].startswith("{"):
        return {"error": f"exit {done.returncode}, see {log}", "wall_s": time.perf_counter() - start}
    return json.loads(lines[-1]) | {"wall_s": time.perf_counter() - start}


def build(args: argparse.Namespace, model: str, folder: Path, log: Path) -> Path:
    """Build and save the random pipeline (or PickScore) once, in a subprocess (this process stays
    small while the measurements run); a marker file says with what settings."""
    marker = folder / "built.json"
    settings = {"model": model, "dtype": args.dtype, "resolution": args.resolution, "full_depth": args.full_depth}
    if model == "pickscore":  # float32 and 224 px whatever the pipelines are
        settings = {"model": model}
    if not (marker.exists() and json.loads(marker.read_text()) == settings):
        argv = [sys.executable, str(HERE / "random_pipelines.py"), model, str(folder), "--dtype", args.dtype]
        argv += ["--resolution", str(args.resolution)] + (["--full-depth"] if args.full_depth else [])
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n")
            f.flush()
            subprocess.run(argv, stdout=f, stderr=f, check=True)
        marker.write_text(json.dumps(settings))
    return folder / ("pickscore" if model == "pickscore" else "pipeline")


def parameters(folder: Path) -> dict[str, int]:
    """Parameters per component of a saved pipeline, from its safetensors headers (nothing loaded)."""
    from safetensors import safe_open

    counts = {}
    for path in sorted(folder.glob("*/*.safetensors")):
        with safe_open(path, "pt") as f:
            n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        counts[path.parent.name] = counts.get(path.parent.name, 0) + n
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="sd-turbo,sdxl-turbo,flux-schnell")
    ap.add_argument("--methods", default="noise-ppo", help='noise-ppo and/or ddpo (the DDPO row\'s hook); "": none')
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="the frozen model's dtype (the policy and reward stay float32)")
    ap.add_argument("--resolution", type=int, default=256, help="image size (SDXL-Turbo 512, FLUX 1024 at full size)")
    ap.add_argument("--prompts", default="animals")
    ap.add_argument("--prompts-per-iteration", type=int, default=1)
    ap.add_argument("--samples-per-prompt", type=int, default=2)
    ap.add_argument("--render-batch", type=int, default=0, help="images per pipeline call (0: the whole batch)")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-pickscore", action="store_true", help="skip the PickScore-sized reward")
    ap.add_argument("--ddpo-iterations", type=int, default=1, help="DDPO iterations timed (--methods ddpo)")
    ap.add_argument("--full-depth", action="store_true", help="FLUX at all 19 + 38 blocks and 24 T5 layers (a GPU)")
    ap.add_argument("--clean", action="store_true", help="delete each saved model after its measurements (disk)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/noiseppo-real-sizes"), help="where the models are saved")
    ap.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--model-folder", help=argparse.SUPPRESS)
    ap.add_argument("--pickscore-folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        return run_phase(args)

    import torch

    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "real_sizes.log"
    methods = [m for m in args.methods.split(",") if m]  # --methods "": sampling (and PickScore) alone
    results: dict[str, Any] = {}
    pickscore = None if args.no_pickscore else build(args, "pickscore", args.work / "pickscore", log)
    for model in args.models.split(","):
        start = time.perf_counter()
        depth = "-full" if args.full_depth and model == "flux-schnell" else ""
        folder = build(args, model, args.work / f"{model}{depth}-{args.dtype}-{args.resolution}", log)
        row: dict[str, Any] = {"build_s": time.perf_counter() - start, "parameters": parameters(folder)}
        common = ["--model", model, "--model-folder", str(folder), "--pickscore-folder", str(pickscore)]
        row["sampling"] = child(args, ["--phase", "sampling", *common], log)
        for method in methods:
            row[method] = child(args, ["--phase", method, *common], log)
        if pickscore is not None:
            row["pickscore"] = child(args, ["--phase", "pickscore", *common], log)
        ppo, sampling = row.get("noise-ppo", {}), row["sampling"]
        if "peak_rss_gb" in ppo and "peak_rss_gb" in sampling:
            row["memory_over_sampling"] = ppo["peak_rss_gb"] / sampling["peak_rss_gb"]
            row["loop_memory_over_sampling"] = ppo["loop_peak_rss_gb"] / sampling["loop_peak_rss_gb"]
            if "peak_cuda_gb" in ppo:
                row["cuda_memory_over_sampling"] = ppo["peak_cuda_gb"] / sampling["peak_cuda_gb"]
            checks = {"train_over_sampling": ppo["train_over_sampling"] >= GOALS["train_over_sampling"],
                      "policy_over_generation": ppo["policy_over_generation"] <= GOALS["policy_over_generation"],
                      "memory_over_sampling": row["memory_over_sampling"] <= GOALS["memory_over_sampling"]}  # fmt: skip
            row["goals_met"] = checks
        results[model] = row
        if args.clean:
            shutil.rmtree(folder.parent)
        print(f"{model}: {json.dumps(row)}", flush=True)
    print(
        json.dumps(
            {
                "device": args.device,
                "dtype": args.dtype,
                "resolution": args.resolution,
                "steps": args.steps,
                "batch": args.prompts_per_iteration * args.samples_per_prompt,
                "prompts": args.prompts,
                "full_depth": args.full_depth,
                "threads": args.threads or torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "goals": GOALS,
                "models": results,
            }
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
