"""Embedding rows for tokens an extended tokenizer added (`tokenizer.mode: extend`, `model.new_rows`).

`mean`: a new token's input row (and its output row, when the output layer is not tied to the input) is the mean of
the rows of the pieces the base tokenizer splits the token's text into — what the base model saw for that text so
far, so the new token starts where the model's understanding of its spelling is. This is the simplest of the
informed initialisations studied for vocabulary extension (the "subword mean" of Chinese-LLaMA-style extensions and
the baseline in FOCUS and OFA); WECHSEL and FOCUS go further with similarities from static word vectors of the target
language, which this toolkit does not have offline. `random`: normal(0, the config's initializer_range), as the
families initialise embeddings, for comparison. Rows the padding of the vocabulary adds stay as the family
initialises them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from fuxitranyu.tokenizer.extend import Extension


def base_pieces(base_tokenizer: Path, extension: Extension) -> dict[int, list[int]]:
    """For each added id, the base tokenizer's ids for the token's text (its BPE model applied to the token)."""
    from tokenizers import Tokenizer

    base = Tokenizer.from_file(str(base_tokenizer / "tokenizer.json"))
    return {index: [piece.id for piece in base.model.tokenize(token)] for index, token in extension.added}


def grow_embeddings(model, extension: Extension, pieces: dict[int, list[int]],
                    method: Literal["mean", "random"], pad_to_multiple_of: int, seed: int) -> dict[str, int | str]:
    """Give `model` a row for every id of the extended tokenizer (padded to a multiple) and initialise the added
    tokens' rows by `method`; returns the counts for the manifest."""
    rows = model.get_input_embeddings().weight.shape[0]
    torch.manual_seed(seed)
    if extension.size > rows:
        model.resize_token_embeddings(extension.size, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    tables = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not tables[0]:
        tables.append(output.weight)
    averaged = 0
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for index, ids in pieces.items():
            for table in tables:
                if method == "mean" and ids:
                    table[index] = table[ids].mean(0)
                else:  # also rows that were padding of the base's vocabulary before
                    table[index].normal_(0.0, std)
            averaged += method == "mean" and bool(ids)
    return {"new_rows": method, "added_tokens": len(extension.added), "rows_before": rows,
            "rows_after": int(tables[0].shape[0]), "rows_from_pieces": averaged}
