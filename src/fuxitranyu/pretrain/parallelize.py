"""Parallelism is PyTorch's own: the model loaded (or built on the meta device), its layers compiled or checkpointed,
then wrapped in DDP or sharded with FSDP2 `fully_shard` (ZeRO-2 by default, as the paper; ZeRO-3 with
`reshard_after_forward`), the fused loss on top. Kept apart from the loop, as torchtitan keeps `parallelize.py`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.distributed as dist

from fuxitranyu.pretrain.architecture import load_causal_lm, model_type, trainable_parts
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.pretrain.decisions import Runtime, attention_implementation, sharded
from fuxitranyu.pretrain.loss import CausalLMLoss


def load_trainable_model(model_dir: Path, attention: str):
    """The model to train, with `attention` (a recipe's kernel name) as its attention implementation: ours, or any
    causal LM a run continues from (`architecture.load_causal_lm`)."""
    from fuxitranyu.model import FuxiTranyuConfig, FuxiTranyuForCausalLM

    implementation = attention_implementation(attention)
    if model_type(model_dir) != FuxiTranyuConfig.model_type:
        return load_causal_lm(model_dir, implementation)
    if (model_dir / "model.safetensors").is_file() or (model_dir / "model.safetensors.index.json").is_file():
        model = FuxiTranyuForCausalLM.from_pretrained(model_dir, attn_implementation=implementation,
                                                      dtype=torch.float32)
    else:
        # Config only (the model stage does not materialise presets of more than 4 GiB): build on the meta device;
        # the weights are allocated and initialised after sharding, each rank holding only its shard.
        config = FuxiTranyuConfig.from_pretrained(model_dir)
        config._attn_implementation = implementation
        with torch.device("meta"):
            model = FuxiTranyuForCausalLM(config)
    return model


def materialize(model, device: torch.device, seed: int) -> None:
    """Allocate a meta-device model's (possibly sharded) weights on `device` and initialise them the transformers
    way (normal(0, initializer_range), zero biases, unit norms, RoPE tables)."""
    model.to_empty(device=device)
    torch.manual_seed(seed)
    for module in model.modules():
        model._init_weights(module)


def wrap(model, recipe: PretrainSection, runtime: Runtime, seed: int, compile_layers: bool
         ) -> tuple[torch.nn.Module, bool]:
    """(the module to call, whether its parameters are sharded). Layers are compiled / checkpointed first."""
    on_meta = any(p.is_meta for p in model.parameters())
    model.train()  # from_pretrained returns eval mode, where transformers skips activation checkpointing
    if recipe.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = trainable_parts(model).layers
    if compile_layers:
        for layer in layers:
            layer.compile()
    shard = sharded(recipe, runtime.world)
    if on_meta and not shard:
        materialize(model, runtime.device, seed)
    if not any(p.is_meta for p in model.parameters()):
        model.to(runtime.device)
    wrapper = CausalLMLoss(model, recipe.loss_chunk_tokens)
    if not shard and runtime.world_size == 1:
        return wrapper, False
    if not shard:
        from torch.nn.parallel import DistributedDataParallel

        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        return DistributedDataParallel(wrapper, device_ids=ids), False
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(runtime.device.type, (runtime.world_size,))
    dtype = runtime.precision.autocast_dtype
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype is not None \
        else MixedPrecisionPolicy()
    for layer in layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=recipe.reshard_after_forward, mp_policy=policy)
    fully_shard(wrapper, mesh=mesh, reshard_after_forward=recipe.reshard_after_forward, mp_policy=policy)
    if on_meta:
        materialize(model, runtime.device, seed + runtime.rank)  # a seed per rank: shards must not repeat each other
    return wrapper, True


def all_reduce(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.world_size > 1:
        dist.all_reduce(tensor)
    return tensor


class ReenableSync(contextlib.AbstractContextManager):
    def __init__(self, module):
        self.module = module

    def __exit__(self, *exc):
        self.module.set_requires_gradient_sync(True)
        return False
