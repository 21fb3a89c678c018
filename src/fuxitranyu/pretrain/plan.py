"""Will a pretraining recipe fit its devices, and how long will it take? Estimated before any compute is spent.

Memory per device (bytes), P parameters over N data-parallel devices:
- **training state** under the recipe's data parallelism: FSDP2 keeps fp32 parameters, fp32 gradients and AdamW's
  two fp32 moments sharded (16·P/N); with `reshard_after_forward: false` (ZeRO-2, the paper's) it also holds every
  layer's unsharded low-precision weights from forward to backward (2·P in bf16/fp16), with `true` (ZeRO-3) one
  layer's at a time. DDP holds everything whole (16·P, plus 2·P of autocast's weight copies).
- **activations**, what autograd saves for backward per token and decoder layer, counted from the tensors each op
  saves in `fuxitranyu.model.modeling` (d hidden, f MLP, k key/value width, h heads):
  fp32 `32d + 8k + 8f + 4h + 8`; under bf16/fp16 autocast `24d + 4k + 4f + 4h + 8` (norms compute in fp32 and hand
  one low-precision copy to the linear layers; RoPE and attention run in low precision; SDPA's kernels save no
  T×T matrix, the `matmul` kernel saves the (heads × T) probabilities of each position; `eager`, a reference, is not
  planned). Checked against the bytes
  `torch.autograd.graph.saved_tensors_hooks` sees (tests/test_plan.py: within 10%). With activation checkpointing a
  layer keeps only its input (4d), and one layer's activations exist again during its backward.
- **other architectures** (`model.init_from`): the training state and the loss are counted on the model's own
  module tree. transformers' Llama, Mistral and Qwen2 layers save, measured the same way, fp32
  `32d + 8k + 16f + 4h + 8` and under autocast `30d + 4k + 8f + 4h + 8` (their SwiGLU keeps the gate, its SiLU,
  the up projection and the product; their RMSNorm returns fp32, which the next linear layer copies). Other
  families (GPT-NeoX, BLOOM, ...) are not modelled: their plan says that activations are not planned and gives the
  rest.
- **the loss**: the fused cross-entropy (`fuxitranyu.pretrain.loss`) materialises `loss_chunk_tokens × vocab` fp32
  logits and their low-precision gradient at once, and holds the output layer's fp32 gradient (4·vocab·d) from the
  forward pass on; per token it keeps the last norm's tensors and the gradient of the hidden states (12d).
Not counted: the CUDA context and allocator fragmentation (`headroom` is left for them), temporary buffers of
collectives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from fuxitranyu.errors import FuxiError
from fuxitranyu.model.summary import ModelSummary, recipe_model, summarize_module
from fuxitranyu.pretrain.architecture import width_proxy
from fuxitranyu.pretrain.config import PretrainSection

GIB = 2**30
HEADROOM = 0.9
"""Share of a device's memory a plan may use: the rest is the CUDA context, the allocator's fragmentation and the
collectives' buffers."""
LAYER_BYTES = {"fuxitranyu": ((32, 8, 8), (24, 4, 4)), "llama": ((32, 8, 16), (30, 4, 8))}
"""Bytes a decoder layer saves per token, as coefficients of (d, k, f) in fp32 and under autocast (+ 4h + 8)."""
PLANNED_LAYERS = {"fuxitranyu": "fuxitranyu", "llama": "llama", "mistral": "llama", "qwen2": "llama"}
"""Model types whose decoder layer the activation model counts, and which of LAYER_BYTES it is."""

# Dense (no sparsity) bf16/fp16 peak FLOP/s from the vendors' datasheets.
GPU_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12,
                  "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "V100": 125e12}


def parse_bytes(text: str) -> int:
    """`80GiB`, `80GB`, `512MiB`, or a number of bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise FuxiError(f"expected a size such as 80GiB, 80GB or 512MiB, got {text!r}")
    units = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    unit = (match[2] or "").upper().removesuffix("B")
    return int(float(match[1]) * units[unit])


@dataclass(frozen=True)
class ActivationModel:
    """Bytes autograd saves for backward, per token."""

    per_layer: int
    """One decoder layer without activation checkpointing (its input included)."""
    per_layer_checkpointed: int
    """One decoder layer with activation checkpointing: its input."""
    outside_layers: int
    """The final norm, and the loss's gradient of the hidden states."""

    def saved(self, layers: int, checkpointing: bool) -> int:
        return layers * (self.per_layer_checkpointed if checkpointing else self.per_layer) + self.outside_layers


def activation_model(config, mixed_precision: bool, attention: str = "sdpa", context: int = 0) -> ActivationModel:
    """For a config of one of PLANNED_LAYERS' model types (ours or transformers')."""
    widths = width_proxy(config)
    d, f, h = widths.hidden_size, widths.intermediate_size, widths.num_attention_heads
    k = widths.num_key_value_heads * widths.head_dim
    per_d, per_k, per_f = LAYER_BYTES[PLANNED_LAYERS[config.model_type]][mixed_precision]
    layer = per_d * d + per_k * k + per_f * f + 4 * h + 8
    if attention == "matmul":
        # Instead of the flash kernel's fp32 log-sum-exp (4h): the (heads × T) probabilities of each position, and
        # under grouped-query attention the keys and values repeated to every head.
        width = 2 if mixed_precision else 4
        layer += width * (h * context + 2 * (d - k)) - 4 * h
    # the last norm (its fp32 input and normalised value) and the fp32 gradient of the hidden states the loss keeps
    return ActivationModel(layer, 4 * d, 12 * d)


@dataclass(frozen=True)
class MemoryPlan:
    strategy: str
    """ddp, fsdp (ZeRO-2: reshard_after_forward false) or fsdp-zero3, or single (one device)."""
    world_size: int
    micro_batch: int
    context: int
    checkpointing: bool
    training_state: int
    """Parameters, gradients and optimizer state on one device."""
    activations: int | None
    """Saved for backward at the end of a micro-batch's forward, plus (with checkpointing) one layer recomputed;
    None for an architecture whose layers the activation model does not describe."""
    loss_logits: int
    """The fused loss's logits and their gradient (one chunk at a time), and the output layer's gradient it forms."""
    device_memory: int | None
    largest_micro_batch: int | None
    """The largest micro-batch that fits (None without a device size or an activation model)."""
    architecture: str = "FuxiTranyuForCausalLM"

    @property
    def total(self) -> int:
        """Everything planned; without an activation model, a lower bound."""
        return self.training_state + (self.activations or 0) + self.loss_logits

    @property
    def fits(self) -> bool | None:
        """None when unknown: no device size, or no activation model and the rest alone fits."""
        if self.device_memory is None:
            return None
        fits = self.total <= HEADROOM * self.device_memory
        return fits if self.activations is not None or not fits else None

    def rows(self) -> list[tuple[str, str]]:
        rows = [("data parallelism", f"{self.strategy} over {self.world_size} device(s)"),
                ("micro-batch", f"{self.micro_batch} × {self.context} tokens, activation checkpointing "
                                f"{'on' if self.checkpointing else 'off'}"),
                ("parameters + gradients + AdamW state", f"{self.training_state / GIB:.2f} GiB"),
                ("activations saved for backward",
                 f"{self.activations / GIB:.2f} GiB" if self.activations is not None else
                 f"not planned for {self.architecture} (the activation model knows the layers of "
                 f"{', '.join(PLANNED_LAYERS)})"),
                ("loss (one chunk of logits, the output layer's gradient)", f"{self.loss_logits / GIB:.2f} GiB"),
                ("total per device", f"{self.total / GIB:.2f} GiB" if self.activations is not None else
                 f"at least {self.total / GIB:.2f} GiB (without activations)")]
        if self.device_memory is not None:
            space = f"{self.device_memory / GIB:.0f} GiB (using at most {HEADROOM:.0%})"
            rows.append(("verdict",
                         f"does NOT fit in {space}" if self.fits is False else
                         f"fits in {space}; largest micro-batch that fits: {self.largest_micro_batch}" if self.fits
                         else f"unknown: the rest fits in {space}, activations are not planned"))
        return rows


def training_state_bytes(parameters: int, world_size: int, strategy: str, largest_layer: int) -> int:
    if strategy == "single":
        return 16 * parameters + 2 * parameters  # fp32 weights, grads, 2 moments; autocast's low-precision copies
    if strategy == "ddp":
        return 18 * parameters
    sharded = 16 * parameters // world_size
    if strategy == "fsdp":  # ZeRO-2: every layer's unsharded low-precision weights stay from forward to backward
        return sharded + 2 * parameters
    return sharded + 2 * 2 * largest_layer  # ZeRO-3: a layer gathered at a time (and the next one prefetched)


def memory_plan(model: nn.Module, recipe: PretrainSection, context: int, world_size: int, mixed_precision: bool,
                device_memory: int | None = None, attention: str | None = None) -> MemoryPlan:
    """The plan for `model` (a real module or one on the meta device). `attention`: the kernel the trainer chose
    (default: the recipe's; `auto` plans SDPA, what it picks on GPUs)."""
    config = model.config
    strategy = {"ddp": "ddp", "fsdp": "fsdp"}.get(recipe.distributed, "fsdp" if world_size > 1 else "single")
    if strategy == "fsdp" and recipe.reshard_after_forward:
        strategy = "fsdp-zero3"
    summary = summarize_module(model, context)
    layer_parameters = summary.non_embedding_parameters // config.num_hidden_layers
    state = training_state_bytes(summary.parameters, world_size, strategy, layer_parameters)
    tokens_per_micro = recipe.micro_batch_size * context
    layer = (activation_model(config, mixed_precision, attention or recipe.attention, context)
             if config.model_type in PLANNED_LAYERS else None)

    def activations(micro_batch: int) -> int | None:
        if layer is None:
            return None
        tokens = micro_batch * context
        saved = layer.saved(config.num_hidden_layers, recipe.activation_checkpointing) * tokens
        if recipe.activation_checkpointing:
            saved += layer.per_layer * tokens  # the layer being recomputed in backward
        return saved

    loss = (2 * 4 * min(recipe.loss_chunk_tokens, tokens_per_micro) + 4 * config.hidden_size) * config.vocab_size
    largest = None
    if device_memory is not None and layer is not None:
        budget = HEADROOM * device_memory - state - loss
        largest = max(int(budget // activations(1)), 0)
    return MemoryPlan(strategy, world_size, recipe.micro_batch_size, context, recipe.activation_checkpointing, state,
                      activations(recipe.micro_batch_size), loss, device_memory, largest, type(model).__name__)


@dataclass(frozen=True)
class TimePlan:
    device: str
    peak_flops: float
    mfu: float
    world_size: int
    flops_per_token: float
    total_tokens: int

    @property
    def tokens_per_second_per_device(self) -> float:
        return self.peak_flops * self.mfu / self.flops_per_token

    @property
    def days(self) -> float:
        return self.total_tokens / (self.tokens_per_second_per_device * self.world_size) / 86_400

    def rows(self) -> list[tuple[str, str]]:
        return [("device", f"{self.device}: {self.peak_flops / 1e12:.0f} TFLOP/s dense bf16/fp16 peak"),
                ("assumed MFU", f"{self.mfu:.0%}"),
                ("training FLOPs per token", f"{self.flops_per_token:.3e}"),
                ("tokens/s per device", f"{self.tokens_per_second_per_device:,.0f}"),
                ("time for the token budget", f"{self.days:,.1f} days on {self.world_size} devices "
                                             f"({self.total_tokens:,} tokens)")]


def gpu_peak_flops(name: str) -> float:
    for key, peak in GPU_PEAK_FLOPS.items():
        if key.lower() in name.lower():
            return peak
    raise FuxiError(f"no datasheet peak for GPU {name!r}; known: {', '.join(GPU_PEAK_FLOPS)}")


def time_plan(summary: ModelSummary, total_tokens: int, world_size: int, gpu: str, mfu: float) -> TimePlan:
    """`summary` at the training context length (its FLOPs per token count attention at that length)."""
    if not 0 < mfu <= 1:
        raise FuxiError(f"--mfu must be in (0, 1], got {mfu}")
    return TimePlan(gpu, gpu_peak_flops(gpu), mfu, world_size, summary.training_flops_per_token, total_tokens)


def device_memory_bytes(device) -> int:
    """Memory of a training device: a GPU's own, or the machine's physical memory for the CPU."""
    import os

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def mixed_precision_planned(precision: str) -> bool:
    """Plans assume GPUs: `auto` means bf16 or fp16 there."""
    return precision != "fp32"


def refuse_if_too_big(plan: MemoryPlan) -> None:
    """The clear error `pretrain` gives before starting a configuration the plan says cannot fit."""
    if plan.fits is not False:
        return
    advice = (f"lower pretrain.micro_batch_size to {plan.largest_micro_batch}" if plan.largest_micro_batch
              else "even one sequence does not fit: shard more (pretrain.reshard_after_forward: true, more devices)")
    if not plan.checkpointing:
        advice += " or turn on pretrain.activation_checkpointing"
    raise FuxiError(f"this configuration needs about {plan.total / GIB:.1f} GiB per device (training state "
                    f"{plan.training_state / GIB:.1f}, activations {plan.activations / GIB:.1f}, loss "
                    f"{plan.loss_logits / GIB:.1f}) and the device has {plan.device_memory / GIB:.1f} GiB: {advice}; "
                    f"set pretrain.ignore_memory_plan to try anyway")


@dataclass(frozen=True)
class RecipePlan:
    memory: MemoryPlan
    time: TimePlan | None


def recipe_plan(recipe, world_size: int | None = None, device_memory: str | None = None, gpu: str | None = None,
                mfu: float | None = None, model: nn.Module | None = None) -> RecipePlan:
    """The memory and time plan of a recipe on its `pretrain.hardware` (or the devices given here); `model`: the
    recipe's model on the meta device, when the caller has built it already."""
    hardware = recipe.pretrain.hardware
    world_size = world_size or (hardware.devices if hardware else 1)
    memory_text = device_memory or (hardware.device_memory if hardware else None)
    gpu = gpu or (hardware.gpu if hardware else None)
    mfu = mfu or (hardware.expected_mfu if hardware else 0.4)
    model = model if model is not None else recipe_model(recipe)
    context = recipe.mix.context_length
    memory = memory_plan(model, recipe.pretrain, context, world_size,
                         mixed_precision_planned(recipe.pretrain.precision),
                         parse_bytes(memory_text) if memory_text else None)
    time = (time_plan(summarize_module(model, context), recipe.pretrain.total_tokens, world_size, gpu, mfu)
            if gpu else None)
    return RecipePlan(memory, time)
