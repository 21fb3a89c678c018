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
