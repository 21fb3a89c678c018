"""The perplexity filter (paper 3.2, as BLOOM): a SentencePiece + 5-gram KenLM model per language, trained on a
reference set; documents above a per-language perplexity threshold are dropped.

KenLM's `kenlm` Python package scores, but the model is built by KenLM's `lmplz` binary, which no package ships; it
builds from the `kenlm` source distribution on PyPI (`fuxitranyu build-kenlm`, or `build_kenlm()` here).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import numpy as np
from datatrove.data import Document

from fuxitranyu.data.config import PerplexitySection
from fuxitranyu.data.steps import DocumentFilter
from fuxitranyu.errors import FuxiError

KENLM_HOME = Path(os.environ.get("FUXITRANYU_KENLM_HOME", Path.home() / ".cache" / "fuxitranyu" / "kenlm"))
KENLM_SOURCE_VERSION = "0.3.0"
BUILD_PACKAGES = ("cmake g++ libboost-program-options-dev libboost-system-dev libboost-thread-dev "
                  "libboost-test-dev libeigen3-dev zlib1g-dev libbz2-dev liblzma-dev")


def find_lmplz() -> Path:
    """KenLM's `lmplz`: $FUXITRANYU_LMPLZ, then the one `build_kenlm` made, then PATH."""
    candidates = [os.environ.get("FUXITRANYU_LMPLZ"), KENLM_HOME / "bin" / "lmplz", shutil.which("lmplz")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise FuxiError(
        "the perplexity filter needs KenLM's `lmplz`, which is not built on this machine. Build it with "
        f"`fuxitranyu build-kenlm` (needs the Debian packages: {BUILD_PACKAGES}), or point $FUXITRANYU_LMPLZ "
        "at an existing binary, or set data.perplexity.enabled=false"
    )


def require_python_packages() -> None:
    missing = [name for name in ("kenlm", "sentencepiece") if _missing(name)]
    if missing:
        raise FuxiError(f"the perplexity filter needs the Python packages {', '.join(missing)}: "
                        f"pip install {' '.join(missing)}")


def _missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False


def build_kenlm(home: Path = KENLM_HOME, jobs: int = 2) -> Path:
    """Build `lmplz` from the kenlm source distribution on PyPI into `home/bin`; returns its path."""
    missing = [tool for tool in ("cmake", "make", "g++") if shutil.which(tool) is None]
    if missing or not Path("/usr/include/boost/program_options.hpp").is_file():
        raise FuxiError(f"building KenLM needs {', '.join(missing) or 'the Boost headers'}; on Debian: "
                        f"apt-get install {BUILD_PACKAGES}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
                    "--no-build-isolation", f"kenlm=={KENLM_SOURCE_VERSION}", "-d", str(tmp)]
        subprocess.run(download, check=True, capture_output=True)
        (archive,) = tmp.glob("kenlm-*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (source,) = (p for p in tmp.iterdir() if p.is_dir())
        build = source / "build"
        build.mkdir()
        subprocess.run(["cmake", "..", "-DCMAKE_BUILD_TYPE=Release"], cwd=build, check=True, capture_output=True)
        subprocess.run(["make", f"-j{jobs}", "lmplz", "build_binary"], cwd=build, check=True, capture_output=True)
        (home / "bin").mkdir(parents=True, exist_ok=True)
        for tool in ("lmplz", "build_binary"):
            shutil.copy2(build / "bin" / tool, home / "bin" / tool)
    return home / "bin" / "lmplz"


def train_language_model(texts: Iterable[str], folder: Path, order: int, vocab_size: int) -> tuple[Path, Path]:
    """SentencePiece model + binary KenLM model of `order` trained on `texts` (one document per item)."""
    import sentencepiece as spm

    lmplz = find_lmplz()
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    with open(corpus, "w", encoding="utf-8") as f:
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    f.write(line.strip() + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "sp"), vocab_size=vocab_size,
                                   hard_vocab_limit=False, character_coverage=0.9995, minloglevel=2,
                                   num_threads=1)
    tokenizer = spm.SentencePieceProcessor(model_file=str(folder / "sp.model"))
    pieces = folder / "pieces.txt"
    with open(corpus, encoding="utf-8") as src, open(pieces, "w", encoding="utf-8") as dst:
        for line in src:
            dst.write(" ".join(tokenizer.encode(line.rstrip("\n"), out_type=str)) + "\n")
    arpa = folder / "model.arpa"
    with open(pieces, "rb") as stdin, open(arpa, "wb") as stdout:
        result = subprocess.run([str(lmplz), "-o", str(order), "--discount_fallback", "-S", "20%", "-T", str(folder)],
                                stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise FuxiError(f"lmplz failed: {result.stderr.decode(errors='replace')[-500:]}", path=folder)
    build_binary = lmplz.with_name("build_binary")
    model = folder / "model.binary"
    if build_binary.is_file():
        subprocess.run([str(build_binary), str(arpa), str(model)], check=True, capture_output=True)
        arpa.unlink()
    else:
        model = arpa
    corpus.unlink()
    pieces.unlink()
    return folder / "sp.model", model


class PerplexityModel:
    """Document perplexity: 10^(−Σ log10 p / N) over the SentencePiece pieces of all lines (N counts `</s>`)."""

    def __init__(self, sp_model: Path, lm_model: Path):
        self.sp_model, self.lm_model = sp_model, lm_model

    @cached_property
    def _models(self):
        import kenlm
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_file=str(self.sp_model)), kenlm.Model(str(self.lm_model))

    def perplexity(self, text: str) -> float:
        tokenizer, model = self._models
        log10_total, tokens = 0.0, 0
        for line in text.splitlines():
            if not line.strip():
                continue
            pieces = tokenizer.encode(line.strip(), out_type=str)
            log10_total += model.score(" ".join(pieces), bos=True, eos=True)
            tokens += len(pieces) + 1
        return math.inf if tokens == 0 else 10 ** (-log10_total / tokens)


def percentile_threshold(perplexities: list[float], percentile: float) -> float:
    return float(np.percentile(np.asarray(perplexities, dtype=np.float64), percentile))


def reference_texts(recipe: PerplexitySection, filtered: Path) -> dict[str, list[str]]:
    """Per language, up to `max_reference_documents` texts: from `recipe.reference` (JSONL with a `language`
    field), or else from the documents that passed the other filters."""
    from fuxitranyu.data.config import SourceSpec
    from fuxitranyu.data.readers import SourceReader, clean_documents

    texts: dict[str, list[str]] = {}
    if recipe.reference:
        documents = SourceReader(SourceSpec(type="jsonl", paths=recipe.reference)).run(None)
        pairs = ((d.metadata["language"], d.text) for d in documents)
    else:
        pairs = clean_documents(filtered)
    for language, text in pairs:
        if language is None or language.startswith("code-"):
            continue
        bucket = texts.setdefault(language, [])
        if len(bucket) < recipe.max_reference_documents:
            bucket.append(text)
    return texts


def prepare_models(recipe: PerplexitySection, filtered: Path, folder: Path) -> tuple[dict, dict, dict]:
    """Train one model per language with enough reference text and pick its threshold: the recipe's absolute
    `max_perplexity`, else the `max_percentile` of the reference documents' own perplexities.
    Returns (models, thresholds, per-language report)."""
    require_python_packages()
    find_lmplz()
    models, thresholds, report = {}, {}, {}
    for language, texts in sorted(reference_texts(recipe, filtered).items()):
        if len(texts) < recipe.min_reference_documents:
            report[language] = {"reference_documents": len(texts), "model": None}
            continue
        sp_model, lm_model = train_language_model(texts, folder / language, recipe.order, recipe.vocab_size)
        scorer = PerplexityModel(sp_model, lm_model)
        scores = [scorer.perplexity(text) for text in texts]
        threshold = recipe.max_perplexity.get(language, percentile_threshold(scores, recipe.max_percentile))
        models[language] = (str(sp_model), str(lm_model))
        thresholds[language] = threshold
        report[language] = {"reference_documents": len(texts), "threshold": round(threshold, 2),
                            "median_perplexity": round(float(np.median(scores)), 2)}
    return models, thresholds, report


class PerplexityFilter(DocumentFilter):
    """Drops documents above their language's threshold; languages without a model are kept (`no_model` counter)."""

    name = "perplexity"

    def __init__(self, models: dict[str, tuple[str, str]], thresholds: dict[str, float], exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.models = models
        self.thresholds = thresholds

    @cached_property
    def scorers(self) -> dict[str, PerplexityModel]:
        return {lang: PerplexityModel(Path(sp), Path(lm)) for lang, (sp, lm) in self.models.items()}

    def decide(self, doc: Document) -> str | None:
        lang = doc.metadata["language"]
        scorer = self.scorers.get(lang)
        if scorer is None:
            self.stat_update(f"no_model/{lang}")
            return None
        perplexity = scorer.perplexity(doc.text)
        doc.metadata["perplexity"] = round(perplexity, 2)
        return "perplexity" if perplexity > self.thresholds[lang] else None
