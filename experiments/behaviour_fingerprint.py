"""A fingerprint of the package's behaviour, to show that a restructure changed none of it.

    python experiments/behaviour_fingerprint.py > before.json   # on the old code
    python experiments/behaviour_fingerprint.py > after.json    # on the new code
    diff before.json after.json                                 # nothing

It records: every preset's resolved config; a SHA-256 of the images every shipped policy gives
(4 held-out prompts x 2 seeds, at its own step count, standard noise and the policy's); the
metrics rows of a 3-iteration run of each trainer (Noise PPO with a held-out pass after each
iteration, DDPO on the Shapes model, DDPO with LoRA on a tiny SD pipeline built in code, and
3 optimizer steps of the Shapes base model); and compare.json of a 6-method compare. Timing and
memory keys are left out (they are the machine's, not the code's). Every trainer runs through the
command line (``noiseppo.cli.main``), whose arguments a restructure keeps. The last printed line is
one JSON object. The runs go to a temporary folder, removed at the end, unless --out names a
folder to keep.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import sys
import tempfile
from pathlib import Path

TIMING = re.compile(r"time|wall|elapsed|rss|_s$|per_s|cuda_mb")
"""Keys whose values are the machine's (seconds, memory), left out of the fingerprint."""


def untimed(value):
    """``value`` with every timing or memory key left out, at any depth."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def cli(*args: str | Path) -> None:
    """``noiseppo ARGS`` in this process, its output swallowed; a failure stops the fingerprint."""
    from noiseppo.cli import main

    argv = [str(a) for a in args]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    if code != 0:
        raise SystemExit(f"noiseppo {' '.join(argv)}: exit {code}\n{out.getvalue()}{err.getvalue()}")


def rows(metrics: Path) -> list[dict]:
    return [untimed(json.loads(line)) for line in metrics.read_text().splitlines()]


def trainers(out: Path, held_out: Path) -> dict:
    """3 iterations (steps) of each trainer, through the command line: their metrics rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny SD pipeline the tests build
    from tiny_models import tiny_sd_pipeline

    found = {}
    tiny = ["--preset", "tiny", "--threads", "1"]
    cli("ddpo", *tiny, "iterations=3", "eval_every=1", f"eval_prompts={held_out}", "--out", out / "ddpo")
    found["ddpo_shapes"] = rows(out / "ddpo" / "metrics.jsonl")
    prompts = out / "sd_prompts.txt"
    prompts.write_text("a red cat\ntwo dogs\n")
    sd = tiny_sd_pipeline(out / "tiny_sd")
    task = [f"prompts={prompts}", f"eval_prompts={prompts}", "reward=jpeg_compressibility", "steps=2"]
    cli("ddpo", *tiny, "--backend", "diffusers", "--model", sd, *task, "iterations=3", "--out", out / "ddpo_sd")
    found["ddpo_diffusers"] = rows(out / "ddpo_sd" / "metrics.jsonl")
    base = ["--batch", "4", "--dim", "32", "--depth", "1", "--text-dim", "16", "--eval-prompt-count", "2"]
    cli("shapes", "train-base", *base, "--optimizer-steps", "3", "--eval-every", "3", "--out", out / "base")
    found["shapes_base"] = rows(out / "base" / "metrics.jsonl")
    return found


def compare(out: Path, held_out: Path) -> dict:
    """compare.json of a 6-method compare on the tiny preset."""
    methods = "standard,best-of-2,noise-ppo,noise-ppo-blind,golden-top-2,search@16"
    args = ["--methods", methods, "--prompts", held_out, "--seeds", "2", "--preset", "tiny", "--threads", "1"]
    cli("compare", *args, "--golden-noises", "4", "--bootstrap", "100", "--out", out / "compare")
    return untimed(json.loads((out / "compare" / "compare.json").read_text()))


def fingerprint(out: Path) -> dict:
    import torch

    from noiseppo.backends import get_backend
    from noiseppo.configs.presets import presets, resolve
    from noiseppo.policy import load_policy
    from noiseppo.sampling.seeds import standard_noise
    from noiseppo.shapes import splits
    from noiseppo.storage.shipped import shipped_policies, training_config

    torch.set_num_threads(1)
    found: dict = {"presets": {name: dataclasses.asdict(resolve(name)) for name in sorted(presets())}}
    backend, prompts = get_backend("shapes"), splits.test_prompts()[::37]
    found["policies"] = {}
    for name in sorted(shipped_policies()):
        policy, steps = load_policy(name), int(training_config(name)["steps"])
        texts, seeds = [p for p in prompts for _ in range(2)], list(range(2 * len(prompts)))
        with torch.no_grad():
            cond = backend.encode(texts)
            images = [
                backend.generate(z, cond, steps, 1.0)
                for z in (
                    standard_noise(backend.latent_shape, seeds),
                    policy.backend_latents(backend, texts, seeds=seeds),
                )
            ]
        found["policies"][name] = hashlib.sha256(torch.cat(images).numpy().tobytes()).hexdigest()
    held_out = out / "held_out.txt"
    out.mkdir(parents=True, exist_ok=True)
    held_out.write_text("\n".join(splits.test_prompts()[::12]) + "\n")
    cli(
        "train",
        "--preset",
        "tiny",
        "iterations=3",
        "eval_every=1",
        f"eval_prompts={held_out}",
        "threads=1",
        "--out",
        out / "run",
    )
    found["metrics"] = rows(out / "run" / "metrics.jsonl")
    found.update(trainers(out, held_out))
    found["compare"] = compare(out, held_out)
    return json.loads(json.dumps(found).replace(str(out), "<out>"))  # the same wherever the runs went


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--out", type=Path, help="keep the 3-iteration training run here (default: a temporary folder, removed)"
    )
    args = ap.parse_args()
    if args.out is not None:
        print(json.dumps(fingerprint(args.out), sort_keys=True))
        return
    with tempfile.TemporaryDirectory(prefix="fingerprint-") as tmp:
        print(json.dumps(fingerprint(Path(tmp)), sort_keys=True))


if __name__ == "__main__":
    main()
