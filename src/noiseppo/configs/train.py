"""Config dataclasses: every field carries a docstring, which is also its ``--help``."""

from __future__ import annotations

from dataclasses import dataclass

READOUTS = ("shared", "cell", "token", "position")
"""How the policy turns the prompt into its output map (``TrainConfig.readout``)."""


@dataclass
class ShapesModelTrainConfig:
    """Settings of ``noiseppo shapes train-base``, which trains the embedded Shapes model itself
    (the frozen text-to-image model), not a noise policy."""

    optimizer_steps: int = 5000
    """Optimizer steps. Each step renders ``batch`` fresh scenes, so there are no epochs."""
    batch: int = 64
    """Scenes per step."""
    lr: float = 5e-4
    """Peak AdamW learning rate, reached after ``warmup`` steps, then cosine decay to 10%."""
    warmup: int = 200
    """Linear learning-rate warm-up, in optimizer steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average whose weights are exported."""
    uncond_prob: float = 0.1
    """Probability of replacing a prompt by the empty prompt (classifier-free guidance)."""
    dim: int = 128
    """Width of the denoiser at its 8x8 bottleneck (half of it at 16x16, a quarter at 32x32)."""
    depth: int = 4
    """Transformer blocks at the denoiser's bottleneck."""
    text_dim: int = 64
    """Width of the text encoder (and of the token states a noise policy conditions on)."""
    init: str = ""
    """Model folder (an exported ``model/`` or a snapshot) to start from instead of a random
    initialisation: continues an earlier run with a fresh learning-rate schedule."""
    seed: int = 0
    """Seed of the dataset, the initialisation, the timesteps and the noise."""
    checkpoint_every: int = 250
    """Steps between resumable checkpoints."""
    eval_every: int = 500
    """Steps between quick evaluations (EMA weights, shapes-test, 50 DDIM steps)."""
    eval_prompt_count: int = 32
    """How many prompts of shapes-test (the first ones, one seed each) the quick evaluation renders."""
    eval_guidance: float = 1.0
    """Guidance scale of the quick evaluation."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""


@dataclass
class TrainConfig:
    """Settings of ``noiseppo train``: the frozen model, the reward, the policy and PPO.

    One iteration renders ``prompts_per_iteration`` x ``samples_per_prompt`` images, scores
    them, and runs ``epochs`` passes of minibatch PPO over them. Every default is stated here
    once; a preset (``noiseppo/configs/*.yaml``) states only what differs.
    """

    # What is being tuned, and against what.
    backend: str = "shapes"
    """A registered backend (``noiseppo list backends``)."""
    model: str = ""
    """Model folder or hub id ("": the backend's default)."""
    scheduler: str = "default"
    """Sampling scheduler of the frozen model: ``ddim``, ``euler``, ``dpm``, or ``default``, the
    model's own (DDIM for the Shapes model, the pipeline's scheduler for a diffusers model)."""
    device: str = "cpu"
    """torch device of the frozen model and the policy."""
    dtype: str = "float32"
    """dtype of the frozen model (float32, float16 or bfloat16); the policy stays float32."""
    reward: str = "shapes"
    """A registered reward (``noiseppo list rewards``); a black box, never differentiated."""
    prompts: str = "shapes-train"
    """Training prompts: a prompt set or a .txt/.jsonl file."""
    eval_prompts: str = "shapes-test"
    """Held-out prompts for the periodic evaluation ("" to skip it). With another backend than
    ``shapes`` give your own (a Shapes set is refused there: it would only waste renders)."""
    steps: int = 4
    """Sampling steps of the frozen model: the policy is trained for this step count."""
    guidance: float | None = None
    """Classifier-free guidance scale: null (``guidance=none``) takes the backend's default,
    1.0 is no guidance, 0 is a literal 0 (for Shapes: the unconditional model)."""

    # The rollout.
    iterations: int = 80
    """PPO iterations (rollout, then update)."""
    prompts_per_iteration: int = 16
    """Prompts drawn per iteration: without replacement, or with replacement from a prompt file
    that has fewer (``sampling.draw_prompt_ids``)."""
    samples_per_prompt: int = 8
    """Latents per prompt: the group whose rewards normalise each other's advantages."""
    antithetic: bool = True
    """Draw each prompt's noises in mirrored pairs (ε, -ε): the pair's rewards differ only
    through what the direction of ε changes, which cancels much of the gradient's noise.
    Needs an even ``samples_per_prompt``."""
    shared_noise: bool = False
    """Give every prompt of an iteration the same ``samples_per_prompt`` noises: the batch is a
    prompts x noises grid, so each noise's rewards across prompts say how good it is whatever the
    prompt (what ``noise_centring`` removes)."""
    noise_centring: float = 0.0
    """With ``shared_noise``: the fraction of each noise's mean advantage over the iteration's
    prompts that is subtracted from its advantages (1: the two-way centring
    A = r - r̄(c) - r̄(ε) + r̄, on ranks). A noise good for every prompt is what a prompt-generic
    shift learns; at 1 only how a noise suits its prompt more than the others drives the update."""
    render_batch: int = 128
    """Images per forward pass of the frozen model (memory, not learning)."""
    overlap_scoring: bool = True
    """Score each chunk of ``render_batch`` images on a background thread while the next chunk
    renders (``noiseppo.sampling.overlap``): a reward as slow as the model then costs little wall time.
    The rewards and the run are the same bit for bit either way; false scores after each chunk on
    the main thread (for a reward that must run there). Needs several chunks per iteration."""

    # The policy.
    grid: int = 8
    """Side of the policy's low-resolution output map, upsampled to the latent size."""
    width: int = 64
    """Width of the policy's attention layer."""
    learn_sigma: bool = False
    """Learn a per-prompt σ (bounded by ``log_sigma_max``) instead of keeping σ = 1."""
    log_sigma_max: float = 0.5
    """Bound on |log σ| when ``learn_sigma`` is on."""
    readout: str = "cell"
    """How the policy turns the prompt into its output map: "shared" (cells attend to the tokens,
    one linear map for every cell), "cell" (each cell its own linear map and bias), "token" (no
    attention: each contextual token state passes an MLP and paints a whole map, and the prompt's
    map is the mean over its tokens) or "position" (no attention: each token position whitens its
    token state with fixed statistics of the training prompts and paints its own linear map; the
    prompt's map is the sum over its real tokens)."""
    feature_mlp: bool = True
    """Pass each cell's attended features through an MLP before the readout. Without it a cell's
    values are linear in what it attends to, so the contributions of a prompt's words add up."""
    query_std: float = 1.0
    """Initial standard deviation of the policy's per-cell queries, the cells' only identity:
    at 0.02 (the old default) every cell reads the prompt alike at first (docs/noise_ppo.md)."""
    prompt_blind: bool = False
    """Hide the prompt from the policy (one constant conditioning): the control that shows what
    the prompt adds, trained with the same rollout, budget and seed. Rendering still uses the prompt."""
    preserve_variance: bool = False
    """Rescale μ and σ per prompt so that E‖z‖² equals that of N(0, I): the latents keep the
    energy the frozen model expects however far the mean moves."""

    # PPO.
    logprob: str = "mean"
    """Log-probability convention: "sum" over latent dimensions (the true density, the clip
    is a real trust region) or "mean" (DDPO's; the ratio barely moves, the clip is inert)."""
    lr: float = 1e-3
    """AdamW learning rate of the policy."""
    lr_schedule: str = "constant"
    """"constant", or "cosine": from ``lr`` at the first iteration down to ``lr * lr_final`` at
    the end of the run, which lets the last iterations average out the noise of the earlier steps."""
    lr_final: float = 0.0
    """With ``lr_schedule`` cosine: the last iteration's learning rate, as a fraction of ``lr``."""
    adam_beta1: float = 0.9
    """Adam's momentum: the decay of its running mean of gradients. With one step per
    iteration the mean spans about 1 / (1 - adam_beta1) iterations: directions the reward
    keeps pointing to add up, the noise of each iteration's estimate averages out."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    epochs: int = 1
    """PPO epochs over each iteration's samples. With σ fixed the surrogate is linear in μ, so a
    second epoch over the same samples repeats the same noisy direction rather than refining
    it; one step per iteration lets Adam's momentum average directions across iterations."""
    minibatch: int = 0
    """Samples per PPO minibatch; must divide prompts_per_iteration x samples_per_prompt
    (0, the default: the whole batch, one step per epoch).
    Minibatches are made of whole prompt groups (shuffled each epoch), so a multiple of
    ``samples_per_prompt`` keeps every group in one minibatch."""
    clip_range: float = 0.2
    """PPO clip range ε: the ratio is clipped to [1-ε, 1+ε]."""
    target_kl: float = 0.001
    """Stop an iteration's epochs once a minibatch's exact KL(π_old ‖ π_new), per latent
    dimension, exceeds this (0: never). 0.001 lets the mean move ≈ 0.045 per dimension."""
    kl_coef: float = 0.01
    """Weight of the closed-form KL(π(·|c) ‖ N(0, I)) penalty (same reduction as ``logprob``)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each minibatch step."""
    advantages: str = "rank"
    """Per-prompt advantage: "zscore" (the reward's distance from its group's mean in units of
    the group's std, GRPO's) or "rank" (centred ranks in [-0.5, 0.5] within the group, as
    evolution strategies use: insensitive to the reward's scale and to outliers)."""
    adv_buffer: int = 0
    """Rewards remembered per prompt across iterations for advantage normalisation (0: use
    only the prompt's group in this batch, GRPO-style; > 0: DDPO's per-prompt tracker)."""
    adv_min_count: int = 16
    """With ``adv_buffer`` > 0: below this many remembered rewards a prompt uses the batch's
    statistics instead."""
    max_nan_fraction: float = 0.1
    """NaN rewards are dropped and counted; past this fraction of a batch the run aborts."""

    # Bookkeeping.
    seed: int = 0
    """Seed of prompt draws, noise and minibatch order (each derived from (seed, iteration))."""
    checkpoint_every: int = 10
    """Iterations between resumable checkpoints (and always at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk, newest first: a corrupt newest one falls back to the next."""
    eval_every: int = 20
    """Iterations between held-out evaluations (and always at the end; 0: only at the end)."""
    eval_seeds: int = 1
    """Samples per held-out prompt in the periodic evaluation."""
    eval_specificity: bool = True
    """The held-out pass also renders each prompt from the latents the policy makes for another
    prompt, and for the mirrored prompt where there is one (``noiseppo.evaluation.specificity``): own - other
    and own - mirror say whether the gain depends on the prompt. About 1.8x the pass's renders."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    dist_timeout: float = 1800.0
    """Seconds a process waits for the others under ``accelerate launch`` before it gives up
    (a rank that died); also bounds how long the others may spend in a held-out evaluation."""
    wandb: bool = False
    """Also log to Weights & Biases (needs ``pip install wandb``)."""
