import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture
def tiny_config():
    from fuxitranyu.model import preset_config

    return preset_config("tiny", vocab_size=512, num_hidden_layers=2, max_position_embeddings=64)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """A trained ChatML tokenizer directory (vocabulary 384 = 300 learned + 2 chat tokens + padding to 128), from a few
    sentences in several scripts: what the tokenizer stage writes, in well under a second."""
    from fuxitranyu.tokenizer.train import VocabularyLayout, save_pretrained, train_bpe

    texts = ["The quick brown fox jumps over the lazy dog.", "Le renard brun saute par-dessus le chien paresseux.",
             "Съешь же ещё этих мягких французских булок.", "汉语是世界上使用人数最多的语言之一。",
             "ภาษาไทยเป็นภาษาราชการของประเทศไทย", "اردو پاکستان کی قومی زبان ہے۔"] * 20
    tokenizer, _ = train_bpe(texts, VocabularyLayout(300, chat_tokens=True, pad_to_multiple_of=128))
    out = tmp_path_factory.mktemp("tokenizer")
    save_pretrained(tokenizer, out, chat_tokens=True)
    return out
