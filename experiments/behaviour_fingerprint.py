"""A fingerprint of the package's behaviour, to show that a restructure changed none of it.

    python experiments/behaviour_fingerprint.py > before.json   # on the old code
    python experiments/behaviour_fingerprint.py > after.json    # on the new code
    diff before.json after.json                                 # nothing

It records: every preset's resolved config; a SHA-256 of the images every shipped policy gives
(4 held-out prompts x 2 seeds, at its own step count, standard noise and the policy's); and the
metrics rows of a 3-iteration training run with a held-out pass after each iteration, timing keys
left out (they are the machine's, not the code's). The last printed line is one JSON object. The
training run goes to a temporary folder, removed at the end, unless --out names a folder to keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path


def fingerprint(out: Path) -> dict:
    import torch

    from noiseppo.backends import get_backend
    from noiseppo.configs.presets import presets, resolve
    from noiseppo.policy import load_policy
    from noiseppo.sampling.seeds import standard_noise
    from noiseppo.shapes import splits
    from noiseppo.storage.shipped import shipped_policies, training_config
    from noiseppo.training.trainer import train

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
    config = resolve("tiny", overrides=["iterations=3", "eval_every=1", f"eval_prompts={held_out}", "threads=1"])
    train(config, out / "run", quiet=True)
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    found["metrics"] = [
        {k: v for k, v in r.items() if not k.startswith("time_") and k != "samples_per_s"} for r in rows
    ]
    return found


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
