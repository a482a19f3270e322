"""Best-of-N, per-prompt noise search, DDPO and ``noiseppo compare`` (issue 13), on tiny settings."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file

import noiseppo.baselines.ddpo as ddpo_module
from noiseppo.backends.shapes import DEFAULT_MODEL, ShapesBackend
from noiseppo.baselines.best_of_n import candidate_seed, render_candidates
from noiseppo.baselines.ddpo import ddim_step_with_logprob, step_std
from noiseppo.baselines.search import mean_latents_fn, search
from noiseppo.comparison.schema import OPTIONAL_ROW_KEYS, OPTIONAL_TOP_KEYS, ROW_KEYS, TOP_KEYS
from noiseppo.configs.baselines import SearchConfig
from noiseppo.rewards import get_reward
from noiseppo.sampling.render import RenderSpec, sample
from noiseppo.sampling.seeds import sample_seed, standard_noise
from noiseppo.storage.checkpoint import load_state

PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow circle"]
DOC = Path(__file__).parents[1] / "docs" / "baselines.md"


@pytest.fixture(scope="module")
def backend() -> ShapesBackend:
    return ShapesBackend.from_pretrained()


class Counting:
    """The backend, counting the images it renders."""

    def __init__(self, inner: ShapesBackend):
        self.inner, self.rendered = inner, 0
        self.name, self.latent_shape, self.default_guidance = inner.name, inner.latent_shape, inner.default_guidance

    def encode(self, prompts):
        return self.inner.encode(prompts)

    def generate(self, latents, conditioning, steps, guidance):
        self.rendered += len(latents)
        return self.inner.generate(latents, conditioning, steps, guidance)


def test_best_of_n_is_the_arg_max_of_the_reward_on_sample_seeds(backend: ShapesBackend) -> None:
    reward = get_reward("shapes")
    cands = render_candidates(backend, reward, PROMPTS, RenderSpec(4, 1.0, 2, 3, 8), 4, keep_images=True)
    # Candidate 0 is exactly noiseppo sample's image of the same seed: best-of-1 is standard sampling.
    plain = sample(backend, PROMPTS, RenderSpec(4, 1.0, 2, 3, 8))
    assert all(torch.equal(a, s.image) for a, s in zip(cands.images[0], plain, strict=True))
    standard = reward(torch.stack([s.image for s in plain]), [s.prompt for s in plain]).numpy()
    assert np.array_equal(cands.best(1)["reward"], standard)
    # Each candidate k renders `sample` under its own base seed, never one of the evaluation's own seeds.
    scores = []
    for k in range(4):
        images = [s.image for s in sample(backend, PROMPTS, RenderSpec(4, 1.0, 2, candidate_seed(3, k), 8))]
        assert all(torch.equal(a, b) for a, b in zip(cands.images[k], images, strict=True))
        scores.append(reward(torch.stack(images), [p for p in PROMPTS for _ in range(2)]).numpy())
    own = {sample_seed(3, i, j) for i in range(3) for j in range(64)}
    assert not own & {sample_seed(candidate_seed(3, k), i, j) for k in (1, 2, 3) for i in range(3) for j in range(2)}
    scores = np.stack(scores)
    for n in (1, 2, 4):
        chosen = cands.pick(n)
        assert np.array_equal(chosen, scores[:n].argmax(0))
        assert np.array_equal(cands.best(n)["reward"], scores[:n].max(0))
    assert (cands.best(4)["reward"] >= cands.best(2)["reward"]).all()


def test_search_never_renders_more_than_its_budget_and_is_deterministic(backend: ShapesBackend) -> None:
    counting = Counting(backend)
    config = SearchConfig(budget=20, group=8, steps=2, seed=5, batch=16)
    result = search(counting, get_reward("shapes"), PROMPTS, config, snapshot_at=(8, 12, 16))
    assert counting.rendered == len(PROMPTS) * 16 <= len(PROMPTS) * config.budget  # 2 generations of 8; 4 unused
    assert result.renders == 16 and [r["renders"] for r in result.log] == [8, 16]
    assert sorted(result.snapshots) == [8, 12, 16] and torch.equal(result.snapshots[16], result.cells)
    assert torch.equal(result.snapshots[8], result.snapshots[12])  # a budget of 12 stops after one generation
    assert result.cells.abs().sum() > 0

    again = search(backend, get_reward("shapes"), PROMPTS, config)
    assert torch.equal(again.cells, result.cells) and torch.equal(again.best_latents, result.best_latents)
    assert np.array_equal(again.best_reward, result.best_reward)
    shorter = search(backend, get_reward("shapes"), PROMPTS, SearchConfig(budget=8, group=8, steps=2, seed=5))
    assert torch.equal(shorter.cells, result.snapshots[8])  # the budget-8 search is the first generation of this one
    other = search(backend, get_reward("shapes"), PROMPTS, SearchConfig(budget=8, group=8, steps=2, seed=6))
    assert not torch.equal(other.cells, shorter.cells)

    # The best latents render to the best images again, and the best reward is the max of what was seen.
    images = backend.generate(result.best_latents, backend.encode(PROMPTS), 2, 1.0)
    assert torch.allclose(images, result.best_images, atol=1e-4)
    rescored = get_reward("shapes")(images, PROMPTS).numpy()
    assert np.allclose(rescored, result.best_reward)
    assert all(1 <= r <= 16 for r in result.best_render)

    # The searched mean pairs with noiseppo sample's seeds: z = up(m) + ε of the same seed.
    fn = mean_latents_fn(result.cells, PROMPTS, backend.latent_shape)
    eps = standard_noise(backend.latent_shape, [sample_seed(0, 1, 0)])
    z = fn(backend.encode([PROMPTS[1]]), eps)
    up = torch.nn.functional.interpolate(result.cells[1:2], size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(z - eps, up, atol=1e-6)


def test_search_cli_writes_latents_images_and_a_log(noiseppo, tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ["search", "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--budget", "20", "--group", "4"]
    done = noiseppo.in_process(*args, "--steps", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    log = json.loads((out / "search.json").read_text())
    assert log["renders_per_prompt"] == 20 and [r["renders"] for r in log["log"]] == [4, 8, 12, 16, 20]
    assert [p["prompt"] for p in log["prompts"]] == PROMPTS[:2]
    tensors = load_file(out / "latents.safetensors")
    assert tensors["best_latents"].shape == (2, 3, 32, 32) and tensors["cells"].shape == (2, 3, 8, 8)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0000.png", "0001.png"]
    assert (out / "grid.png").is_file()
    assert "searched 2 prompt(s), 20 renders each" in done.stdout


def test_ddim_eta_1_step_log_prob_matches_torch_normal(backend: ShapesBackend) -> None:
    scheduler = DDIMScheduler.from_config(backend.train_scheduler_config, timestep_spacing="trailing")
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x, out, noise = (torch.randn(3, 3, 32, 32, generator=g) for _ in range(3))
    stochastic = 0
    for t in scheduler.timesteps:
        prev_x, lp, mean, std = ddim_step_with_logprob(scheduler, out, t, x, 1.0, noise=noise)
        # The sample is diffusers' own DDIM step at eta 1 with this variance noise.
        expected = scheduler.step(out, t, x, eta=1.0, variance_noise=noise).prev_sample
        assert torch.allclose(prev_x, expected, atol=1e-6)
        prev_t = int(t) - 1000 // 4
        a_t = scheduler.alphas_cumprod[int(t)]
        a_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        assert std == pytest.approx(float(((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()), rel=1e-5)
        if std > 0:
            stochastic += 1
            normal = torch.distributions.Normal(mean, std).log_prob(prev_x).flatten(1).mean(1)
            assert torch.allclose(lp, normal, atol=1e-5)
            # The PPO pass scores a given x_prev: the same number.
            _, again, _, _ = ddim_step_with_logprob(scheduler, out, t, x, 1.0, prev_x=prev_x)
            assert torch.allclose(again, lp)
    assert stochastic == 3  # the last step, to alpha-bar 1, is deterministic
    assert step_std(scheduler, int(scheduler.timesteps[-1]), 1.0) == 0.0


def _digest(folder: Path) -> dict[str, str]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_ddpo_cli_tunes_a_copy_first_ratio_1_and_leaves_the_shipped_model_untouched(noiseppo, tmp_path: Path) -> None:
    before = _digest(DEFAULT_MODEL)
    out = tmp_path / "ddpo"
    done = noiseppo.in_process("ddpo", "--preset", "tiny", "--no-eval", "--threads", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert _digest(DEFAULT_MODEL) == before
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    for row in rows:  # each iteration's first ratio, before its first optimizer step, is 1
        assert row["first_ratio_dev"] < 1e-5
        assert row["grad_norm"] > 0
    shipped = load_file(DEFAULT_MODEL / "denoiser" / "diffusion_pytorch_model.safetensors")
    tuned = load_file(out / "model" / "denoiser" / "diffusion_pytorch_model.safetensors")
    assert shipped.keys() == tuned.keys()
    assert any(not torch.equal(shipped[k], tuned[k]) for k in shipped)
    summary = json.loads((out / "ddpo.json").read_text())
    assert summary["renders"] == 2 * 2 * 4 and summary["stochastic_steps"] == 3
    assert summary["trajectory_bytes_per_sample"] == 5 * 3 * 32 * 32 * 4 + 4 * 4  # x_T..x_0 and 4 log-probs
    ShapesBackend.from_pretrained(out / "model")  # a model folder noiseppo sample --model reads
    assert "tuned model written to" in done.stdout


def test_ddpo_ctrl_c_checkpoints_the_last_finished_iteration_and_resume_ends_as_one_run(
    noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after iteration 2's update: that update is put back, iteration 1 is checkpointed, and
    ``--resume`` (then ``--resume --iterations 3``) ends bit for bit as an uninterrupted 3-iteration run."""
    base = ["ddpo", "--preset", "tiny", "--no-eval", "--threads", "1", "--iterations", "3"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert noiseppo.in_process(*base, "--out", whole).returncode == 0
    real = ddpo_module.ddpo_iteration

    def interrupted_after_the_update(*args, **kwargs):
        got = real(*args, **kwargs)
        if args[-1] == 1:  # iteration 2 (counted from 0 here): updated, not yet logged
            raise KeyboardInterrupt
        return got

    monkeypatch.setattr(ddpo_module, "ddpo_iteration", interrupted_after_the_update)
    stopped = noiseppo.in_process(*base[:-1], "2", "--out", part)
    assert stopped.returncode == 130
    assert stopped.stderr.strip() == (
        f"noiseppo: interrupted at iteration 1 of 2 (checkpoint saved); `noiseppo ddpo --resume {part}` continues"
    )
    assert load_state(part / "checkpoint")[1]["iteration"] == 1 and not (part / "model").exists()
    monkeypatch.setattr(ddpo_module, "ddpo_iteration", real)
    assert noiseppo.in_process("ddpo", "--resume", part).returncode == 0  # to its own 2
    done = noiseppo.in_process("ddpo", "--resume", part, "--iterations", "3")
    assert done.returncode == 0, done.stderr
    assert f"tuned model written to {part / 'model'}" in done.stdout

    def rows(run: Path) -> list[dict]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "train_time_s"} for line in lines]

    assert [r["iteration"] for r in rows(part)] == [1, 2, 3] and rows(part) == rows(whole)
    a, b = load_state(whole / "checkpoint")[0], load_state(part / "checkpoint")[0]
    assert a.keys() == b.keys() and any(k.startswith("denoiser.") for k in a) and any(k.startswith("optim") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), "denoiser or optimizer differ after the resume"
    assert _digest(part / "model") == _digest(whole / "model")
    assert json.loads((part / "ddpo.json").read_text())["iterations"] == 3


def test_compare_json_follows_its_documented_schema(noiseppo, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a red circle\ntwo blue squares\n")
    out = tmp_path / "c"
    methods = "standard,best-of-1,best-of-3,noise-ppo,noise-ppo+best-of-2,noise-ppo-blind,golden-top-2,search@16,ddpo@1"
    args = ["compare", "--methods", methods, "--prompts", str(tmp_path / "p.txt"), "--seeds", "2", "--preset", "tiny"]
    args += ["--golden-noises", "4"]
    done = noiseppo.in_process(*args, "--search-curve", "16", "--bootstrap", "100", "--threads", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    body = json.loads((out / "compare.json").read_text())
    assert set(body) == set(TOP_KEYS)
    assert body["methods"] == methods.split(",") and [r["method"] for r in body["rows"]] == body["methods"]
    assert body["pairs"] == 4
    for row in body["rows"]:
        assert set(ROW_KEYS) <= set(row) and row["n"] == 4, row["method"]
    rows = {r["method"]: r for r in body["rows"]}
    # The standard row recomputed through the public API from the seed rule (image j of prompt i:
    # sample_seed(0, i, j)): a wrong seed, step count or metric changes it.
    backend, prompts = ShapesBackend.from_pretrained(), ["a red circle", "two blue squares"]
    texts = [p for p in prompts for _ in range(2)]
    noise = standard_noise(backend.latent_shape, [sample_seed(0, i, j) for i in range(2) for j in range(2)])
    with torch.no_grad():
        images = backend.generate(noise, backend.encode(texts), 4, 1.0)
    verdicts = get_reward("shapes-correct")(images, texts)
    assert rows["standard"]["correct"] == pytest.approx(float(torch.as_tensor(verdicts).mean()))
    assert rows["standard"]["delta"] == 0 and rows["best-of-1"]["correct"] == rows["standard"]["correct"]
    assert rows["best-of-3"]["renders_per_image"] == 3 and rows["best-of-3"]["oracle_at_inference"]
    assert rows["best-of-3"]["reward"] >= rows["best-of-1"]["reward"]
    assert rows["search@16"]["renders_train"] == 2 * 16 and not rows["search@16"]["weights_change"]
    assert rows["ddpo@1"]["weights_change"] and rows["ddpo@1"]["renders_train"] == 8
    assert rows["noise-ppo"]["renders_train"] == 16 and rows["noise-ppo"]["peak_rss_mb"] > 0
    assert [p["renders_per_prompt"] for p in body["search_curve"]] == [16]
    # The prompt-specificity controls: on every policy row, none on the others (no relation prompt: no mirror).
    for name in ("noise-ppo", "noise-ppo-blind"):
        assert rows[name]["other_pairs"] == 4 and "own_minus_mirror" not in rows[name]
    assert rows["noise-ppo-blind"]["own_minus_other"] == 0  # the prompt hidden: another prompt's latents are its own
    assert rows["noise-ppo-blind"]["renders_train"] == rows["noise-ppo"]["renders_train"]
    assert "own_minus_other" not in rows["golden-top-2"] and rows["golden-top-2"]["renders_train"] == 69 * 4
    p3 = body["against_best_of_n"]["noise-ppo"]
    assert [a["method"] for a in p3["against"]] == ["best-of-1", "best-of-3"] and "matches_best_of_n" in p3
    assert p3["against"][0]["delta"] == pytest.approx(rows["noise-ppo"]["correct"] - rows["best-of-1"]["correct"])
    assert body["against_ddpo"]["ddpo_final"]["iteration"] == 1 and "wall_time_ratio_at_ends" in body["against_ddpo"]
    assert (out / "compare.png").is_file()
    page = (out / "report.html").read_text()  # the baselines on a page: every row, its score as in the JSON
    table = page[page.index('<table class="compare-table">') :].split("</table>")[0]
    for name, row in rows.items():
        assert f'<td>{name}</td><td class="num">{row["correct"]:.3f}</td>' in table, name
    last = done.stdout.strip().splitlines()[-1]
    summary = json.loads(last)  # one line: the scores and the path of the JSON with every figure
    assert summary["rows"]["standard"] == round(rows["standard"]["correct"], 4) and summary["metric"] == "correct"
    assert summary["wrote"] == str(out / "compare.json") and set(summary) == {"wrote", "metric", "rows"}
    # docs/baselines.md documents exactly these keys.
    documented = set(re.findall(r"^\| `(\w+)` \|", DOC.read_text(), re.M))
    assert documented == set(TOP_KEYS) | set(OPTIONAL_TOP_KEYS) | set(ROW_KEYS) | set(OPTIONAL_ROW_KEYS)


def test_compare_takes_its_metric_from_the_reward(noiseppo, tmp_path: Path) -> None:
    """A reward without a verdict (JPEG size) makes the table, the rows and best-of-N's pick the reward itself."""
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "standard,best-of-1,best-of-3", "--prompts", tmp_path / "p.txt", "--seeds", "2"]
    done = noiseppo.in_process(*args, "--reward", "jpeg_compressibility", "--bootstrap", "100", "--out", out)
    assert done.returncode == 0, done.stderr
    body = json.loads((out / "compare.json").read_text())
    assert body["metric"] == "reward" and "correct" not in body["rows"][0]
    rows = {r["method"]: r for r in body["rows"]}
    assert rows["best-of-1"]["reward"] == rows["standard"]["reward"] < 0  # minus kB
    assert rows["best-of-3"]["reward"] > rows["best-of-1"]["reward"]  # the pick maximises the reward
    assert "held-out reward at 4 steps" in done.stdout
