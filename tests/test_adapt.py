"""Adapting existing models: the trainer on stock Hugging Face architectures, checked against transformers' own loss
and gradients."""

from __future__ import annotations

import pytest
import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.pretrain.architecture import trainable_parts
from fuxitranyu.pretrain.config import PretrainSection
from fuxitranyu.pretrain.loss import CausalLMLoss
from fuxitranyu.pretrain.train import make_optimizer

VOCAB = 97


def stock_model(family: str, seed: int = 0):
    """A tiny random model of a stock family, built from its config class (eager attention: the reference)."""
    import transformers

    small = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    configs = {
        "llama": transformers.LlamaConfig(**small, intermediate_size=64, num_key_value_heads=2,
                                          max_position_embeddings=64),
        "qwen2": transformers.Qwen2Config(**small, intermediate_size=64, num_key_value_heads=2,
                                          max_position_embeddings=64),
        "mistral": transformers.MistralConfig(**small, intermediate_size=64, num_key_value_heads=2,
                                              max_position_embeddings=64, sliding_window=None),
        "gpt_neox": transformers.GPTNeoXConfig(**small, intermediate_size=64, max_position_embeddings=64),
        "bloom": transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4),
    }
    torch.manual_seed(seed)
    config = configs[family]
    config._attn_implementation = "eager"
    return transformers.AutoModelForCausalLM.from_config(config).float()


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gpt_neox", "bloom"])
def test_first_step_loss_and_gradients_equal_transformers_own(family):
    """The trainer's loss (its own fused output layer and cross-entropy, on the model's body) against
    `model(ids, labels=ids).loss` and its backward, on two copies of the same random model."""
    ours_model, reference = stock_model(family), stock_model(family)
    ids = torch.randint(0, VOCAB, (3, 17), generator=torch.Generator().manual_seed(1))
    expected = reference(input_ids=ids, labels=ids).loss
    expected.backward()
    total, losses = CausalLMLoss(ours_model, chunk_tokens=7)(ids[:, :-1], ids[:, 1:])
    (total / losses.numel()).backward()
    assert (total / losses.numel()).item() == pytest.approx(expected.item(), rel=1e-6)
    theirs = dict(reference.named_parameters())
    for name, parameter in ours_model.named_parameters():
        torch.testing.assert_close(parameter.grad, theirs[name].grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("family, embeddings", [("llama", 2), ("gpt_neox", 2), ("bloom", 1)])
def test_embeddings_are_found_by_role_and_not_decayed(family, embeddings):
    model = stock_model(family)
    parts = trainable_parts(model)
    assert len(parts.embeddings) == embeddings  # BLOOM ties its output layer to the input embeddings
    assert len(parts.layers) == 2
    optimizer = make_optimizer(model, PretrainSection(), parts.embeddings)
    no_decay = {id(p) for p in optimizer.param_groups[1]["params"]}
    assert all(id(table) in no_decay for table in parts.embeddings)
    decayed = optimizer.param_groups[0]["params"]
    assert decayed and all(p.ndim >= 2 and id(p) not in no_decay for p in decayed)


def test_models_whose_logits_are_not_the_output_layers_are_refused():
    import transformers

    gemma = transformers.Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    with pytest.raises(FuxiError, match=r"Gemma2ForCausalLM cannot be trained here: logits transformed after the "
                                        r"output layer \(final_logit_softcapping\)"):
        trainable_parts(transformers.AutoModelForCausalLM.from_config(gemma))
    phi = transformers.PhiConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4)
    with pytest.raises(FuxiError, match="PhiForCausalLM cannot be trained here: an output layer with a bias"):
        trainable_parts(transformers.AutoModelForCausalLM.from_config(phi))
