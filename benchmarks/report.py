"""The weight and cost of a run's HTML report, and the README's screenshot of it.

    python benchmarks/report.py RUN_DIR [--screenshot docs/report.png] [--repeats 3]

Builds ``noiseppo report``'s page of RUN_DIR (as the command does: the run's latest policy is
loaded to render the grid) and reports its size. Then, in one process and interleaved, times
``--repeats`` training iterations of the run's config and as many rebuilds of the page as
``noiseppo train`` makes them at a checkpoint (from the trainer's own model and policy): the
ratio of the medians is what one rewritten page costs, in iterations, on this machine. With
``--screenshot``, the top of the page as headless Chromium paints it at 1200 px, cut to
``--height`` pixels and reduced to a 128-colour palette (the README's figure). Nothing is
written into RUN_DIR. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def screenshot(page: Path, out: Path, height: int) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "shot.png"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
        flags += ["--hide-scrollbars", f"--user-data-dir={profile}/p", f"--window-size=1200,{height}"]
        command = [chromium, *flags, f"--screenshot={shot}", page.resolve().as_uri()]
        subprocess.run(command, check=True, capture_output=True)
        with Image.open(shot) as im:
            im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--height", type=int, default=1450)
    args = parser.parse_args()
    from noiseppo.configs.presets import resolve  # after the arguments: --help answers at once
    from noiseppo.report.page import REPORT, Live, write
    from noiseppo.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        page = write([args.run], Path(tmp) / REPORT)
        size, images = page.stat().st_size, page.read_text().count("<img ")
        if args.screenshot:
            screenshot(page, args.screenshot, args.height)

        trainer = Trainer(resolve(config_file=str(args.run / "config.yaml")))
        live = Live(trainer.backend, trainer.policy, trainer.reward, 0)
        steps, builds = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            trainer.step()
            steps.append(time.perf_counter() - start)
            start = time.perf_counter()
            write([args.run], Path(tmp) / "again.html", live)
            builds.append(time.perf_counter() - start)
    result = {
        "run": str(args.run),
        "bytes": size,
        "mb": round(size / 1e6, 3),
        "images": images,
        "iteration_s": round(statistics.median(steps), 2),
        "build_s": round(statistics.median(builds), 2),
        "build_per_iteration": round(statistics.median(builds) / statistics.median(steps), 2),
        "repeats": args.repeats,
    }
    if args.screenshot:
        result.update(screenshot=str(args.screenshot), screenshot_bytes=args.screenshot.stat().st_size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
