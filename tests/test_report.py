"""``noiseppo report``: the self-contained HTML page of a run and of an evaluation.

The page of a real tiny run (through the CLI, with a held-out evaluation) is opened in headless
Chromium, which must load it without a single network request, paint a screenshot that is not
blank, and hold the held-out table and the grid images in its DOM. CI installs Chromium
(``.ci/run``), so there the browser tests run; elsewhere they skip, saying why, only when
``chromium`` is absent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import noiseppo.report.page as report_module
from noiseppo.evaluation.grid import MAX_HEIGHT, MAX_WIDTH
from noiseppo.evaluation.held_out import held_out_line
from noiseppo.rewards import REWARDS
from noiseppo.shapes import splits

HELD_OUT = splits.test_prompts()[::12]  # 13 held-out prompts: a held-out pass of seconds
WINDOW = (1200, 900)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--hide-scrollbars", "--mute-audio",
]  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs this test")
    return path


def browse(chromium: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on ``page``, in a fresh profile folder."""
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def page_requests(net_log: Path) -> list[str]:
    """The URLs of every network request the page made, from Chromium's net log.

    A request made on behalf of a page carries the page's top-level site in its network
    isolation key: ``file://`` for a local file. Chromium's own background requests (the
    network-time query, the account check) carry none and are not the page's.
    """
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start and "file://" in e["params"].get("network_isolation_key", "")
    ]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "poster", "data")]


@pytest.fixture(scope="module")
def run(noiseppo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration tiny run, through the CLI, with held-out evaluations at iterations 0,
    1 and 2; what it printed is in ``stdout.txt`` beside it."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "held_out.txt").write_text("\n".join(HELD_OUT) + "\n")
    args = ["train", "--preset", "tiny", f"eval_prompts={folder / 'held_out.txt'}", "eval_every=1"]
    done = noiseppo.in_process(*args, "--out", folder / "run")
    assert done.returncode == 0, done.stderr
    (folder / "stdout.txt").write_text(done.stdout)
    return folder / "run"


def test_train_writes_a_page_that_chromium_shows_offline(run: Path, chromium: str, tmp_path: Path) -> None:
    page = run / "report.html"
    html = page.read_text()
    assert page.stat().st_size < 3e6
    # Self-contained: no script, and every link inline.
    parsed = _Links()
    parsed.feed(html)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags
    assert parsed.links and all(link.startswith("data:image/png;base64,") for link in parsed.links), parsed.links

    # (a) The page loads with no network request: Chromium's net log holds none of the page's.
    net_log = tmp_path / "net.json"
    shot = tmp_path / "shot.png"
    w, h = WINDOW
    loaded = browse(
        chromium, page, tmp_path / "profile-a", f"--log-net-log={net_log}", f"--window-size={w},{h}",
        f"--screenshot={shot}",
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert page_requests(net_log) == []
    # (b) The screenshot has the window's size and is a page, not a blank. (Chromium's headless
    # --screenshot and --dump-dom run on JavaScript, so they cannot show the page with it off; the
    # page has no script to run, and its Content-Security-Policy would refuse one.)
    with Image.open(shot) as im:
        assert im.size == WINDOW
        pixels = np.asarray(im.convert("RGB")).astype(np.int16)
    ink = (np.abs(pixels - 255).sum(axis=2) > 60).mean()  # pixels well away from white
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert 0.02 < ink < 0.9 and colours > 50, (ink, colours)
    # (c) The DOM holds the held-out table and the grid's images.
    dom = browse(chromium, page, tmp_path / "profile-b", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    table = dom.stdout[dom.stdout.index('<table class="held-out"') :].split("</table>")[0]
    assert all(f"<td>{metric}</td>" in table for metric in ("correct", "partial")) and "[" in table
    images = dom.stdout.count('class="grid-image" src="data:image/png;base64,')
    assert images == 6 * 2 * 2  # 6 prompts x 2 seeds x (standard, policy)


def test_the_net_log_check_sees_a_page_that_fetches(chromium: str, tmp_path: Path) -> None:
    """The check above can fail: a page that links a remote image and a stylesheet is caught."""
    page = tmp_path / "fetches.html"
    page.write_text(
        '<!doctype html><link rel="stylesheet" href="http://style.invalid/a.css">'
        '<p>hello</p><img src="http://images.invalid/a.png">'
    )
    net_log = tmp_path / "net.json"
    assert browse(chromium, page, tmp_path / "profile", f"--log-net-log={net_log}", "--dump-dom").returncode == 0
    assert sorted(page_requests(net_log)) == ["http://images.invalid/a.png", "http://style.invalid/a.css"]


def test_the_run_page_holds_what_the_run_measured(noiseppo, run: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    done = noiseppo.in_process("report", run, "--out", out)
    assert done.returncode == 0 and f"wrote {out} (" in done.stdout, done.stderr
    html = out.read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    # The held-out table repeats the last evaluation's numbers, rounded as printed.
    assert f"{last['eval_standard_correct']:.3f}" in html and f"{last['eval_correct']:.3f}" in html
    assert f"[{last['eval_delta_correct_ci95_low']:+.3f}, {last['eval_delta_correct_ci95_high']:+.3f}]" in html
    assert "finished" in html and "batch: 2 prompts x 4 samples = 8 images per iteration" in html
    # The per-template table splits the same pairs: its pair counts add up, and its deltas
    # (weighted by pairs) give back the whole table's.
    from noiseppo.shapes.grammar import parse

    templates = {parse(p).template for p in HELD_OUT}
    pairs = {t: last[f"eval_group_{t}_pairs"] for t in templates}
    assert len(templates) > 1 and sum(pairs.values()) == last["eval_pairs"]
    whole = sum(pairs[t] * last[f"eval_group_{t}_delta_correct"] for t in templates) / last["eval_pairs"]
    assert whole == pytest.approx(last["eval_correct"] - last["eval_standard_correct"])
    table = html[html.index('<table class="groups">') :].split("</table>")[0]
    for t in templates:
        assert f"<td>{t}</td>" in table and f"{last[f'eval_group_{t}_delta_correct']:+.3f}" in table
    revision = json.loads((run / "run.json").read_text())["git_revision"]
    assert revision is None or revision in html
    # Each config key, with its docstring as a tooltip.
    assert 'title="PPO clip range ε: the ratio is clipped to [1-ε, 1+ε]."' in html
    for title in ("reward (mean ± std over the batch)", "clipfrac", "samples/s", "held-out correct"):
        assert f'alt="{title}"' in html, title
    # The wall time is the run's real one (its last row's time_wall), which holds the iterations'
    # own times and the evaluations' and more (start-up, checkpoints, pages): never less than their sum.
    batch = 2 * 4
    summed = sum(batch / r["samples_per_s"] for r in rows if "samples_per_s" in r)
    summed += sum(r.get("time_eval", 0.0) for r in rows)
    walls = [r["time_wall"] for r in rows]
    assert walls == sorted(walls) and walls[-1] >= summed
    assert f"{report_module._duration(walls[-1])}: the run&#39;s real wall time, start to last row" in html


def test_a_prompt_with_html_in_it_is_shown_as_text(noiseppo, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A user's prompt file holding markup: trained on (a diffusers model reads any text), then shown."""
    from tiny_models import tiny_sd_pipeline

    evil = "<script>alert(1)</script>"
    (tmp_path / "prompts.txt").write_text(f"{evil}\na red cat\n")
    pipe = tiny_sd_pipeline(tmp_path / "sd")
    prompts = str(tmp_path / "prompts.txt")
    args = ["train", "--preset", "tiny", "--backend", "diffusers", "--model", str(pipe), "--reward"]
    args += ["jpeg_compressibility", "--prompts", prompts, f"eval_prompts={prompts}", "--out", str(tmp_path / "run")]
    assert noiseppo.in_process(*args).returncode == 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    chromium = request.getfixturevalue("chromium")  # the escaping above holds without a browser
    dom = browse(chromium, tmp_path / "run" / "report.html", tmp_path / "profile", "--dump-dom")
    assert '<div class="prompt">&lt;script&gt;alert(1)&lt;/script&gt;</div>' in dom.stdout
    assert "<script" not in dom.stdout.lower()


def test_a_run_in_progress_gets_a_page_of_what_is_there(noiseppo, run: Path, tmp_path: Path) -> None:
    """Iteration 1 of 2 logged, iteration 2's row cut off half way (the writer was mid-line)."""
    live = tmp_path / "live"
    shutil.copytree(run, live)
    lines = (live / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iteration"] == 2
    (live / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    assert noiseppo.in_process("report", live).returncode == 0
    html = (live / "report.html").read_text()
    assert "iteration 1 of 2 (in progress, or stopped" in html
    assert "1 line(s) of metrics.jsonl are not a complete JSON row and were skipped" in html
    kept = json.loads(lines[-2])  # the held-out table is the last whole row's: iteration 1's
    assert kept["iteration"] == 1 and f"at iteration 1, {kept['eval_pairs']:.0f} pairs" in html
    assert f"{kept['eval_correct']:.3f}" in html

    # Just started: config.yaml written, no row yet.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(run / "config.yaml", fresh / "config.yaml")
    assert noiseppo.in_process("report", fresh).returncode == 0
    html = (fresh / "report.html").read_text()
    assert "metrics.jsonl holds no row yet" in html and "iteration 0 of 2" in html
    assert "not rendered:" in html  # no policy saved yet: said, not a crash


class HalfBlind:
    """A reward that cannot tell images apart and fails on the first of every batch: NaN, then 0.5s."""

    def __call__(self, images, prompts: list[str]) -> list[float]:
        return [math.nan] + [0.5] * (len(prompts) - 1)


def test_the_page_warns_of_what_the_run_measured(noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REWARDS, "half-blind", (HalfBlind, "NaN for one image, 0.5 for the others"))
    args = ["train", "--preset", "tiny", "eval_prompts=", "max_nan_fraction=0.2", "--reward", "half-blind"]
    assert noiseppo.in_process(*args, "--out", tmp_path / "run").returncode == 0
    html = (tmp_path / "run" / "report.html").read_text()
    warnings = html[html.index('<ul class="warnings">') :].split("</ul>")[0]
    assert "2 NaN rewards dropped, in 2 of 2 iterations (at most 1 at iteration 1)" in warnings
    assert "in 2 of 2 iterations more than 25% of the prompt groups had identical rewards" in warnings
    assert "100% of groups on average" in warnings


def test_eval_writes_its_page_and_report_joins_run_and_eval(noiseppo, run: Path, tmp_path: Path) -> None:
    held_out = run.parent / "held_out.txt"
    ev = tmp_path / "eval"
    args = ["eval", "--policy", str(run), "--prompts", str(held_out), "--steps", "1,2", "--seeds", "1"]
    assert noiseppo.in_process(*args, "--bootstrap", "200", "--out", ev).returncode == 0
    html = (ev / "report.html").read_text()
    results = json.loads((ev / "eval.json").read_text())["results"]
    assert html.count('<tr><td class="num">') == len(results) == 2 * 3  # 2 step counts x 3 metrics
    for r in results:
        assert f"[{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}]" in html
    assert 'alt="gain against steps"' in html and 'alt="grid at 1 steps"' in html and 'alt="grid at 2 steps"' in html

    both = tmp_path / "both.html"
    assert noiseppo.in_process("report", run, ev, "--out", both).returncode == 0
    html = both.read_text()
    assert f"Run {run}" in html and f"Evaluation {ev}" in html


def test_train_rewrites_the_page_at_checkpoints_and_a_failed_page_is_a_warning(
    noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_module, "CHECKPOINT_INTERVAL_S", 0.0)
    pages = []
    real = report_module.write

    def write(folders, out, live=None):
        pages.append(real(folders, out, live).read_text())
        return out

    monkeypatch.setattr(report_module, "write", write)
    assert noiseppo.in_process("train", "--preset", "tiny", "eval_prompts=", "--out", tmp_path / "run").returncode == 0
    assert len(pages) == 2  # the checkpoint of iteration 1, then the end
    assert "iteration 1 of 2" in pages[0] and "finished" in pages[1]

    def broken(folders, out, live=None):
        raise RuntimeError("no room for the page")

    monkeypatch.setattr(report_module, "write", broken)
    again = noiseppo.in_process("train", "--preset", "tiny", "eval_prompts=", "--out", tmp_path / "again")
    err = again.stderr
    assert again.returncode == 0, err
    assert "noiseppo: warning: " in err and "report not written (RuntimeError: no room for the page)" in err
    assert (tmp_path / "again" / "policy").is_dir() and not (tmp_path / "again" / "report.html").exists()


def test_periodic_evaluations_are_one_line_each_and_images_in_tensorboard(run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "held_out/standard_vs_policy" in events.Tags()["images"]
    images = events.Images("held_out/standard_vs_policy")
    assert [i.step for i in images] == [1, 2] and all(i.width <= MAX_WIDTH + 1 for i in images)
    # The untrained policy's evaluation and iteration 1's are one line each; the last one's is the held-out table.
    first, row = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()[:2]]
    printed = [line for line in (run.parent / "stdout.txt").read_text().splitlines() if "held-out at" in line]
    assert printed == [held_out_line(first), held_out_line(row)]
    assert printed[1].startswith(f"held-out at iteration 1, {len(HELD_OUT)} pairs: standard -> policy, correct ")
    assert f"partial {row['eval_standard_partial']:.3f} -> {row['eval_partial']:.3f}" in printed[1]


def test_sample_pages_a_long_grid(noiseppo, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    done = noiseppo.in_process("sample", "--prompts", "shapes-test", "--n", "1", "--steps", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    said = done.stdout
    pages = sorted(out.glob("grid-*.png"))
    assert len(pages) > 1 and f"grid-1.png ... grid-{len(pages)}.png ({len(pages)} pages)" in said
    assert not (out / "grid.png").exists()
    for page in pages:
        with Image.open(page) as im:
            assert im.height <= MAX_HEIGHT and im.width <= MAX_WIDTH + 1


# -- own - other and own - mirror where people look -----------------------------------------------
OTHER_SENTENCE = "own - other: the gain with the latents made for this prompt minus the gain with the latents made"
MIRROR_SENTENCE = "own - mirror: the same with the latents made for the mirrored relation"
IGNORES, NO_MIRROR = "the policy ignores the prompt", "no mirrored prompts in this set"


def test_eval_shows_both_controls_with_what_they_mean_and_a_blind_policy_ignores_the_prompt(
    noiseppo, run: Path, tmp_path: Path
) -> None:
    """A prompt-blind policy gives each prompt the latents it gives every other: own - other and
    own - mirror are exactly 0, which the table and the page say in words, not as "[+0.000, +0.000]"."""
    blind = tmp_path / "blind"
    done = noiseppo.in_process("train", "--preset", "tiny", "eval_prompts=", "prompt_blind=true", "--out", blind)
    assert done.returncode == 0, done.stderr
    prompts = tmp_path / "relations.txt"
    prompts.write_text("a red circle left of a blue square\na green square above a yellow circle\n")
    args = ["eval", "--policy", blind, "--prompts", prompts, "--steps", "1", "--seeds", "2", "--bootstrap", "200"]
    done = noiseppo.in_process(*args, "--out", tmp_path / "ev")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "own-other [95% CI]" in lines[0] and "own-mirror [95% CI]" in lines[0]
    assert all(line.count(IGNORES) == 2 for line in lines[1:4]), done.stdout  # reward, correct, partial
    assert lines[4].startswith(OTHER_SENTENCE) and lines[5].startswith(MIRROR_SENTENCE)
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "<th>own − other [95% CI]</th><th>own − mirror [95% CI]</th>" in html
    assert html.count(f'">{IGNORES}</td>') == 6 and OTHER_SENTENCE in html and MIRROR_SENTENCE in html


def test_prompts_without_a_mirror_say_so_in_the_table_and_on_the_page(noiseppo, run: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "plain.txt"
    prompts.write_text("a red circle\ntwo blue squares\na green triangle\n")  # no spatial relation: no mirror
    args = ["eval", "--policy", run, "--prompts", prompts, "--steps", "1", "--seeds", "2", "--bootstrap", "200"]
    done = noiseppo.in_process(*args, "--out", tmp_path / "ev")
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "ev" / "eval.json").read_text())["results"]
    assert all("own_minus_other" in r and "own_minus_mirror" not in r for r in results)
    rows = done.stdout.splitlines()[1:4]
    assert all(line.endswith(NO_MIRROR) for line in rows), done.stdout
    for r, line in zip(results, rows, strict=True):
        low, high = r["ci95_other_low"], r["ci95_other_high"]
        assert (IGNORES if low == high == 0 else f"{r['own_minus_other']:+.3f} [{low:+.3f}, {high:+.3f}]") in line
    html = (tmp_path / "ev" / "report.html").read_text()
    assert html.count(f'<td class="num control-mirror">{NO_MIRROR}</td>') == 3 and OTHER_SENTENCE in html


def test_the_run_page_shows_the_held_out_controls_with_what_they_mean(noiseppo, run: Path, tmp_path: Path) -> None:
    """The last held-out row's own - other (one metric exactly [0, 0]), and no mirror among its prompts."""
    measured = tmp_path / "run"
    shutil.copytree(run, measured)
    lines = (measured / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    last["eval_other_pairs"] = last["eval_pairs"]
    figures = {"correct": (0.0, 0.0, 0.0), "partial": (0.125, 0.05, 0.2), "reward": (0.125, 0.05, 0.2)}
    for metric, (value, low, high) in figures.items():
        name = f"eval_own_minus_other_{metric}"
        last.update({name: value, f"{name}_ci95_low": low, f"{name}_ci95_high": high})
    (measured / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    assert noiseppo.in_process("report", measured).returncode == 0
    html = (measured / "report.html").read_text()
    table = html[html.index('<table class="held-out"') :].split("</table>")[0]
    assert "<th>own − other [95% CI]</th><th>own − mirror [95% CI]</th>" in table
    assert f'<td class="num control-other">{IGNORES}</td>' in table  # correct: exactly [0, 0]
    assert table.count('<td class="num control-other">+0.125 [+0.050, +0.200]</td>') == 2
    assert table.count(f'<td class="num control-mirror">{NO_MIRROR}</td>') == 3
    assert OTHER_SENTENCE in html and MIRROR_SENTENCE in html

    # The fixture's own run measured neither (tiny: eval_specificity false): the page says so, no column.
    html = (run / "report.html").read_text()
    assert "own − other [95% CI]" not in html
    assert "own - other and own - mirror: not measured (eval_specificity is off)" in html
