"""Where the analyses look inside a causal LM, found from its module structure, and the hooks that look.

A decoder is a `ModuleList` of `num_hidden_layers` identical blocks. In each block:

    attn_norm ─ attention: q k v (separate, or one fused projection split by unit) ─ o
    mlp_norm  ─ MLP: [gate] up ─ down

The two norms are the block's own norm children, in the order the block registers them (the pre-attention norm,
then the pre-MLP one). The attention block is the child that holds the query/key/value projections, the MLP block the
child that holds the up/down projections; inside them, a projection's role comes from the attribute name the model
families use for it (table below), since a weight's shape cannot tell q from k. That gives the paper's 8
components per layer for FuxiTranyu (non-gated MLP), GPT-2, BLOOM and GPT-NeoX, and 9 for gated MLPs (Llama, Qwen,
Mistral, Arcee with a gate...). Anything else is refused with an error that names the model class.

Hooks live here, outside `modeling.py`, and are removed when their context ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from fuxitranyu.errors import FuxiError

COMPONENTS = ("attn_norm", "q", "k", "v", "o", "mlp_norm", "mlp_gate", "mlp_up", "mlp_down")
"""Every component name, in the order tables and figures show them (a layout has those its model has)."""

SEPARATE_QKV = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "query": "q", "key": "k", "value": "v"}
FUSED_QKV_PER_HEAD = ("query_key_value",)
"""Units laid out head by head, [q_h k_h v_h] for each head h (BLOOM, GPT-NeoX)."""
FUSED_QKV_BLOCKS = ("c_attn", "qkv_proj")
"""Units laid out [q | k | v] (GPT-2, Phi-3)."""
ATTENTION_OUT = ("o_proj", "dense", "c_proj", "out_proj")
MLP_GATE = ("gate_proj",)
MLP_UP = ("up_proj", "c_fc", "dense_h_to_4h", "fc1")
MLP_DOWN = ("down_proj", "c_proj", "dense_4h_to_h", "fc2")
FUSED_GATE_UP = ("gate_up_proj",)
"""Units laid out [gate | up] (Phi-3)."""

SUPPORTED = ("separate q/k/v/o projections (FuxiTranyu, Llama, Arcee, Qwen, Mistral), fused query_key_value "
             "(BLOOM, GPT-NeoX), c_attn/c_proj + c_fc/c_proj (GPT-2), qkv_proj + gate_up_proj (Phi-3); two norms "
             "per block")


@dataclass(frozen=True)
class TrackedModule:
    """A module whose output units are neurons of one component, or of several (a fused projection)."""

    layer: int
    path: str
    """Dotted name in the model, e.g. `model.layers.3.self_attn.q_proj`."""
    components: tuple[str, ...]
    module: nn.Module = field(compare=False, repr=False)
    unit_component: torch.Tensor | None = field(default=None, compare=False, repr=False)
    """(units,) index into `components` for a fused projection; None: every unit belongs to components[0]."""


@dataclass(frozen=True)
class DecoderLayout:
    model_class: str
    layers_path: str
    layers: tuple[nn.Module, ...] = field(repr=False)
    components: tuple[str, ...]
    """The components of every layer, in `COMPONENTS` order."""
    modules: tuple[TrackedModule, ...] = field(repr=False)
    final_norm: nn.Module | None = field(default=None, repr=False)
    """The norm between the last layer and the LM head, when the model has one."""

    @property
    def points(self) -> tuple[str, ...]:
        """Where representations are read: `emb`, the embedding output as the first layer receives it, then each
        layer's output, the last one after the final norm: the states transformers' `output_hidden_states` returns."""
        return ("emb", *map(str, range(len(self.layers))))


@dataclass(frozen=True)
class _Part:
    """A tracked module of one decoder layer, by its name within the layer."""

    name: str
    components: tuple[str, ...]
    unit_component: torch.Tensor | None = None


@dataclass(frozen=True)
class _Heads:
    query: int
    key_value: int
    size: int


def is_projection(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, Conv1D))


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith("Norm")


def output_units(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.nf


def find_layout(model: nn.Module) -> DecoderLayout:
    """The tracked components of every decoder layer of `model`; a `FuxiError` naming the model class when its
    layout is not one of `SUPPORTED`."""
    config = model.config.get_text_config() if hasattr(model, "config") else None
    model_class = type(model).__name__
    depth = getattr(config, "num_hidden_layers", None)
    layers_path = _decoder_layers(model, depth, model_class)
    layers = list(model.get_submodule(layers_path))
    modules, components = [], None
    for index, layer in enumerate(layers):
        found = _layer_components(layer, config, model_class, f"{layers_path}.{index}")
        names = tuple(sorted({c for part in found for c in part.components}, key=COMPONENTS.index))
        if components is not None and names != components:
            raise FuxiError(f"{model_class}: layer {index} has components {names}, layer 0 has {components}; "
                            f"layers of different shapes are not supported")
        components = names
        modules += [TrackedModule(index, f"{layers_path}.{index}.{part.name}", part.components,
                                  layer.get_submodule(part.name), part.unit_component) for part in found]
    return DecoderLayout(model_class, layers_path, tuple(layers), components, tuple(modules),
                         _final_norm(model, layers_path))


def _final_norm(model: nn.Module, layers_path: str) -> nn.Module | None:
    """The last norm that the decoder's backbone registers after its list of layers (`norm`, `ln_f`,
    `final_layer_norm`); an embedding norm registered before the layers (BLOOM's) is not it."""
    parent_path, _, list_name = layers_path.rpartition(".")
    children = list(model.get_submodule(parent_path).named_children())
    after = [child for name, child in children[[n for n, _ in children].index(list_name) + 1:] if is_norm(child)]
    return after[-1] if after else None


def _decoder_layers(model: nn.Module, depth: int | None, model_class: str) -> str:
    """The path of the first `ModuleList` of `depth` blocks of one class (the outermost, in definition order)."""
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or not len(module) or (depth and len(module) != depth):
            continue
        if len({type(block) for block in module}) == 1 and any(is_projection(m) for m in module[0].modules()):
            return name
    raise FuxiError(f"{model_class}: found no list of {depth or 'identical'} decoder layers; supported layouts: "
                    f"{SUPPORTED}")


def _layer_components(layer: nn.Module, config, model_class: str, where: str) -> list[_Part]:
    """The tracked modules of one decoder layer."""
    children = dict(layer.named_children())
    norms = [name for name, child in children.items() if is_norm(child)]
    attention = next((n for n, c in children.items() if _projections(c).keys() & {*SEPARATE_QKV, *FUSED_QKV_PER_HEAD,
                                                                                  *FUSED_QKV_BLOCKS}), None)
    mlp = next((n for n, c in children.items() if n != attention and _projections(c).keys() & {*MLP_DOWN}), None)
    if len(norms) != 2 or attention is None or mlp is None:
        found = f"norms {norms or 'none'}, attention {attention or 'none'}, MLP {mlp or 'none'}"
        raise FuxiError(f"{model_class}: cannot map {where} ({type(layer).__name__}: {found}) to the tracked "
                        f"components; supported layouts: {SUPPORTED}")
    found = [_Part(norms[0], ("attn_norm",)), _Part(norms[1], ("mlp_norm",))]
    found += _attention_components(attention, _projections(children[attention]), config, model_class, where)
    found += _mlp_components(mlp, _projections(children[mlp]), model_class, where)
    return found


def _projections(block: nn.Module) -> dict[str, nn.Module]:
    return {name: child for name, child in block.named_children() if is_projection(child)}


def _attention_components(prefix: str, projections: dict[str, nn.Module], config, model_class: str, where: str
                          ) -> list[_Part]:
    found = []
    separate = {name: role for name, role in SEPARATE_QKV.items() if name in projections}
    if sorted(separate.values()) == ["k", "q", "v"]:
        found += [_Part(f"{prefix}.{name}", (role,)) for name, role in separate.items()]
    else:
        fused = next((n for n in (*FUSED_QKV_PER_HEAD, *FUSED_QKV_BLOCKS) if n in projections), None)
        if fused is None:
            raise FuxiError(f"{model_class}: {where}.{prefix} has no q/k/v projections ({', '.join(projections)}); "
                            f"supported layouts: {SUPPORTED}")
        units = output_units(projections[fused])
        split = _per_head_qkv(units, config) if fused in FUSED_QKV_PER_HEAD else _blocked_qkv(units, config)
        if split is None:
            raise FuxiError(f"{model_class}: {where}.{prefix}.{fused} has {units} output units, which do not split "
                            f"into q, k and v for this config's heads; supported layouts: {SUPPORTED}")
        found.append(_Part(f"{prefix}.{fused}", ("q", "k", "v"), split))
    out = next((n for n in ATTENTION_OUT if n in projections), None)
    if out is None:
        raise FuxiError(f"{model_class}: {where}.{prefix} has no output projection ({', '.join(projections)}); "
                        f"supported layouts: {SUPPORTED}")
    return found + [_Part(f"{prefix}.{out}", ("o",))]


def _mlp_components(prefix: str, projections: dict[str, nn.Module], model_class: str, where: str) -> list[_Part]:
    down = next(n for n in MLP_DOWN if n in projections)
    up = next((n for n in MLP_UP if n in projections and n != down), None)
    gate = next((n for n in MLP_GATE if n in projections), None)
    gate_up = next((n for n in FUSED_GATE_UP if n in projections), None)
    if gate_up is not None:
        units = output_units(projections[gate_up])
        halves = torch.arange(units) // (units // 2)
        return [_Part(f"{prefix}.{gate_up}", ("mlp_gate", "mlp_up"), halves), _Part(f"{prefix}.{down}", ("mlp_down",))]
    if up is None:
        raise FuxiError(f"{model_class}: {where}.{prefix} has no up projection ({', '.join(projections)}); "
                        f"supported layouts: {SUPPORTED}")
    found = [_Part(f"{prefix}.{gate}", ("mlp_gate",))] if gate is not None else []
    return found + [_Part(f"{prefix}.{up}", ("mlp_up",)), _Part(f"{prefix}.{down}", ("mlp_down",))]


def _heads(config) -> _Heads:
    """Query heads, key/value heads and head size from a config's standard attributes."""
    heads = config.num_attention_heads
    return _Heads(heads, getattr(config, "num_key_value_heads", None) or heads,
                  getattr(config, "head_dim", None) or config.hidden_size // heads)


def _per_head_qkv(units: int, config) -> torch.Tensor | None:
    heads = _heads(config)
    if heads.key_value != heads.query or units != 3 * heads.query * heads.size:
        return None
    return (torch.arange(units) // heads.size) % 3


def _blocked_qkv(units: int, config) -> torch.Tensor | None:
    heads = _heads(config)
    q_width, kv_width = heads.query * heads.size, heads.key_value * heads.size
    if units != q_width + 2 * kv_width:
        return None
    return torch.cat([torch.zeros(q_width), torch.ones(kv_width), torch.full((kv_width,), 2)]).long()


# ----------------------------------------------------------------------------------------------------------------
# Hooks


class ImportanceHooks:
    """First-order importance of every output unit of the tracked modules, per sentence, in one backward.

    In the forward pass each tracked module's output h (B, T, units) gets a tensor hook; in the backward pass the
    hook receives g = ∂L/∂h and keeps Σ_t g[b, t, i] · h[b, t, i] over the sentence's real tokens: the first-order
    change of L when unit i is zeroed at every position of sentence b. `commit()` adds |that| into the totals of the
    sentence's language, so a batch that fails half-way (out of memory) leaves the totals untouched.
    """

    def __init__(self, layout: DecoderLayout, languages: int):
        self.layout = layout
        self.languages = languages
        self.totals: list[torch.Tensor | None] = [None] * len(layout.modules)
        """Per tracked module: (languages, units) float64, Σ over sentences of |Σ_t g·h|."""
        self._pending: dict[int, torch.Tensor] = {}
        self._language: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None

    def start(self, language: torch.Tensor, token_mask: torch.Tensor) -> None:
        """A new batch: `language` (B,) indices, `token_mask` (B, T), 1 on real tokens."""
        self._pending.clear()
        self._language, self._mask = language, token_mask[..., None].float()

    def commit(self) -> None:
        for index, signed in self._pending.items():
            if self.totals[index] is None:
                self.totals[index] = torch.zeros(self.languages, signed.shape[-1], dtype=torch.float64,
                                                 device=signed.device)
            # index_put_ rather than index_add_: the latter opens a thread pool even for a few rows, which costs tens of
            # milliseconds per call on a busy CPU
            self.totals[index].index_put_((self._language,), signed.abs(), accumulate=True)
        self._pending.clear()

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[ImportanceHooks]:
        handles = [tracked.module.register_forward_hook(self._forward_hook(index))
                   for index, tracked in enumerate(self.layout.modules)]
        model.enable_input_require_grads()  # the weights stay frozen; the graph starts at the embeddings' output
        try:
            yield self
        finally:
            model.disable_input_require_grads()
            for handle in handles:
                handle.remove()

    def _forward_hook(self, index: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            if not h.requires_grad:
                raise RuntimeError(f"{self.layout.modules[index].path}: output does not require grad")
            # detached: the closure must not hold the graph (a reference cycle through grad_fn)
            h.register_hook(lambda grad, value=h.detach(): self._on_grad(index, value, grad))
        return hook

    def _on_grad(self, index: int, value: torch.Tensor, grad: torch.Tensor) -> None:
        signed = (grad.float() * value.float() * self._mask).sum(dim=1, dtype=torch.float64)  # (B, units)
        self._pending[index] = self._pending[index] + signed if index in self._pending else signed


class LastTokenHooks:
    """The hidden state at each sentence's last real token at every point of `layout.points`, summed per
    language: the input of the first layer (the embedding output as the layers see it: token embeddings, plus
    position embeddings or the embedding norm where the model has them), the output of every layer (the residual
    stream), and for the last layer the output of the final norm (the state the LM head reads)."""

    def __init__(self, layout: DecoderLayout, languages: int):
        self.layout = layout
        self.languages = languages
        self.sums: torch.Tensor | None = None
        """(points, languages, hidden) float64."""
        self.counts = torch.zeros(languages, dtype=torch.float64)
        self._pending: dict[int, torch.Tensor] = {}
        self._rows: torch.Tensor | None = None
        self._language: torch.Tensor | None = None

    def start(self, language: torch.Tensor, last_index: torch.Tensor) -> None:
        self._pending.clear()
        self._language = language
        self._rows = (torch.arange(len(last_index), device=last_index.device), last_index)

    def commit(self) -> None:
        for point, states in self._pending.items():
            if self.sums is None:
                self.sums = torch.zeros(len(self.layout.points), self.languages, states.shape[-1],
                                        dtype=torch.float64, device=states.device)
            self.sums[point].index_put_((self._language,), states, accumulate=True)
        self.counts += torch.bincount(self._language.cpu(), minlength=self.languages).double()
        self._pending.clear()

    @contextmanager
    def attached(self) -> Iterator[LastTokenHooks]:
        first = self.layout.layers[0]
        handles = [first.register_forward_pre_hook(self._pre_hook, with_kwargs=True)]
        outputs = list(self.layout.layers)
        if self.layout.final_norm is not None:
            outputs[-1] = self.layout.final_norm
        handles += [module.register_forward_hook(self._output_hook(point))
                    for point, module in enumerate(outputs, start=1)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _keep(self, point: int, hidden: torch.Tensor) -> None:
        self._pending[point] = hidden[self._rows].double()

    def _pre_hook(self, module, args, kwargs):
        self._keep(0, args[0] if args else kwargs["hidden_states"])

    def _output_hook(self, point: int):
        def hook(module, args, output):
            self._keep(point, output[0] if isinstance(output, tuple) else output)
        return hook
