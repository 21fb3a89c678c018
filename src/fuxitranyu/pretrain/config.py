"""The `pretrain` section of a recipe (paper section 3.5 and Table 4)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fuxitranyu.config_base import AdamBetas, Count, PrecisionChoice, Section


class CheckpointStep(Section):
    from_tokens: Count
    """Tokens seen when this checkpoint interval takes over."""
    every_tokens: Count = Field(gt=0)
    """Save a checkpoint every this many tokens."""


class DivergenceGuard(Section):
    """What to do when the loss is NaN/Inf or spikes: the paper's run diverged near 241B tokens and went on from an
    earlier checkpoint with a lower maximum learning rate."""

    action: Literal["skip", "rollback"] = "rollback"
    """`skip` the step (no update), or `rollback` to the last good checkpoint and lower the learning rate."""
    spike_factor: float = Field(3.0, gt=1)
    """A loss above this multiple of its running mean counts as a spike."""
    ema_decay: float = Field(0.95, gt=0, lt=1)
    """Decay of the running mean of the loss."""
    min_steps: int = Field(10, ge=0)
    """No spike detection before this many steps (the early loss falls fast)."""
    lr_factor: float = Field(0.5, gt=0, lt=1)
    """rollback: the peak learning rate is multiplied by this after each rollback."""
    max_retries: int = Field(3, ge=0)
    """Give up (with an error) after this many skips or rollbacks in a row without a good step between them."""


class LRChange(Section):
    at_tokens: Count
    """Tokens seen when the new maximum learning rate takes over."""
    max_lr: float = Field(gt=0)
    """New peak of the cosine schedule from then on."""


class BatchStep(Section):
    from_tokens: Count
    """Tokens seen when this global batch size takes over."""
    batch_tokens: Count = Field(gt=0)
    """Global batch in tokens (a multiple of mix.context_length; reached by gradient accumulation)."""


class Hardware(Section):
    """The devices a recipe is planned for: `--dry-run` and `fuxitranyu model info RECIPE` estimate memory per device
    and days of training from it."""

    gpu: str = "A800"
    """GPU model, for its dense bf16/fp16 peak (A100, A800, H100, H200, H800, L40S, ...)."""
    devices: int = Field(32, ge=1)
    """Data-parallel devices."""
    device_memory: str = "80GiB"
    """Memory of one device."""
    expected_mfu: float = Field(0.4, gt=0, le=1)
    """Model FLOPs utilisation assumed for the time estimate."""


class PretrainSection(Section):
    total_tokens: Count = Field(2_000_000, gt=0)
    """Training length in tokens (paper: 606B)."""
    max_lr: float = Field(3e-4, gt=0)
    """Peak learning rate after warmup (paper 3.5: 3e-4)."""
    lr_changes: list[LRChange] = []
    """Later changes of the peak learning rate (paper 3.5: 1e-4 after divergence near 241B tokens)."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The cosine schedule decays to this fraction of the peak (paper 3.5: 10%)."""
    warmup_tokens: Count = 0
    """Linear warmup length in tokens."""
    adam_betas: AdamBetas = (0.9, 0.95)
    """AdamW β1, β2 (paper 3.5)."""
    adam_eps: float = Field(1e-8, gt=0)
    """AdamW ε (paper 3.5)."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled weight decay on matrices (not on norms, biases or embeddings)."""
    grad_clip: float = Field(1.0, ge=0)
    """Clip the global gradient norm to this value; 0 turns clipping off."""
    batch: list[BatchStep] = [BatchStep(from_tokens=0, batch_tokens=8192)]
    """Global batch size schedule in tokens (paper Table 4: 2M → 4M)."""
    precision: PrecisionChoice = "auto"
    """`auto` decides from the hardware at start-up: bf16 autocast on GPUs that support it (fp16 with loss scaling on
    older ones) and on CPUs with a bf16 matrix unit (AMX / AVX512-BF16, as oneDNN reports), fp32 on other CPUs. The
    choice and its reason go to the manifest. `fp16` uses loss scaling (paper 3.5)."""
    attention: Literal["auto", "sdpa", "flash_attention_2", "eager", "matmul"] = "auto"
    """Attention kernel (paper: FlashAttention-2). `auto`: SDPA (flash kernels on GPUs), except on a CPU under bf16
    autocast with contexts up to 2048, where `matmul` (two batched matmuls that reach the CPU's bf16 unit; it keeps
    the heads × T × T probabilities) is faster. The choice and its reason go to the manifest."""
    distributed: Literal["auto", "ddp", "fsdp"] = "auto"
    """Data parallelism under torchrun: `fsdp` is FSDP2 `fully_shard`; `auto` picks fsdp when world size > 1."""
    reshard_after_forward: bool = False
    """FSDP: False keeps weights gathered between forward and backward (ZeRO-2, as the paper); True is ZeRO-3."""
    micro_batch_size: int = Field(8, gt=0)
    """Sequences per device per forward/backward; the global batch is reached by gradient accumulation."""
    compile: bool | Literal["auto"] = "auto"
    """Compile each decoder layer with torch.compile. `auto`: on GPUs; on a CPU only in bf16 for runs of 1000 steps or
    more (in fp32 compiled layers are hardly faster; shorter runs do not repay the compile time). The decision and its
    reason are printed and written to the manifest."""
    keep_host_memory: bool | Literal["auto"] = "auto"
    """Keep freed host memory in the process for reuse (`fuxitranyu.runtime.keep_freed_host_memory`); `auto`: when
    training on a CPU, where re-faulting each step's large tensors cost more than the loss and the casts together."""
    activation_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass to save memory."""
    loss_chunk_tokens: int = Field(4096, gt=0)
    """Tokens whose logits are materialised at once by the fused cross-entropy (a 250k vocabulary would
    otherwise need a (batch × context × vocab) fp32 tensor)."""
    checkpoints: list[CheckpointStep] = []
    """Checkpoint schedule: every `every_tokens` from `from_tokens` on (dense early, sparser later, as the paper's
    58 released checkpoints). Empty: `auto_checkpoints` spread over the run, denser early; the last step always
    saves one."""
    auto_checkpoints: int = Field(20, ge=1)
    """Without a `checkpoints` schedule: this many checkpoints, the k-th of K after (k/K)² of total_tokens, so that the
    fast-changing early run is seen more often (with 20: at 0.25%, 1%, 2.25%, ... of the tokens)."""
    checkpoint_max_shard_size: str = "5GB"
    """Checkpoints split their weights into safetensors files of at most this size (`save_pretrained`'s
    max_shard_size, e.g. "5GB", "500MB")."""
    divergence: DivergenceGuard = DivergenceGuard()
    hardware: Hardware | None = None
    """The devices the recipe is planned for (a memory and time plan in `--dry-run`); null: no plan."""
    ignore_memory_plan: bool = False
    """Start even when the memory plan says a GPU's memory cannot hold the configuration."""
    peak_flops: float | None = Field(None, gt=0)
    """FLOP/s of one device for MFU; default: measured with a matmul in the training dtype at start-up."""
    eval_every_tokens: Count | None = Field(None, gt=0)
    """Measure the loss on the mix's validation sequences every this many tokens (and at the end); default: ten times
    per run."""
    eval_sequences_per_language: int = Field(16, gt=0)
    """Validation sequences per language (at most) in each measurement."""
    log_every_steps: int = Field(1, gt=0)
    """Write metrics every this many optimizer steps."""

    @model_validator(mode="after")
    def _schedules_ordered(self) -> PretrainSection:
        starts = [step.from_tokens for step in self.batch]
        if not starts or starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError("batch: steps must start at from_tokens 0 and increase strictly")
        changes = [change.at_tokens for change in self.lr_changes]
        if changes != sorted(set(changes)):
            raise ValueError("lr_changes: at_tokens must increase strictly")
        if changes and changes[-1] >= self.total_tokens:
            raise ValueError(f"lr_changes: at_tokens {changes[-1]} is not before total_tokens {self.total_tokens}")
        every = [step.from_tokens for step in self.checkpoints]
        if every != sorted(set(every)):
            raise ValueError("checkpoints: from_tokens must increase strictly")
        if self.warmup_tokens >= self.total_tokens:
            raise ValueError(f"warmup_tokens {self.warmup_tokens} must be below total_tokens {self.total_tokens}")
        return self


