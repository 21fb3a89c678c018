"""The `data` section of a recipe: sources, language identification, filters, perplexity, dedup, execution."""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from fuxitranyu.config_base import LanguageList, Section, canonical_label
from fuxitranyu.data.shingles import MAX_NGRAM
from fuxitranyu.data.text import NO_SPACE_LANGUAGES
from fuxitranyu.languages import LABELS, UnknownLanguageError, label


def _check_labels(labels: list[str] | dict | None) -> None:
    for name in labels or ():
        canonical_label(name, "languages")


class SourceSpec(Section):
    type: Literal["system", "jsonl", "parquet", "text", "huggingface", "udhr", "mediawiki"]
    """`system`: this machine's gettext catalogs and source code; `jsonl` (JSON lines: .jsonl, .ndjson or .json, plain
    or compressed with .gz, .zst, .xz or .bz2; suffixes in any case), `parquet`,
    `text` (a directory of .txt files, one document each), `huggingface` (a dataset name or local path), `udhr`
    (the Universal Declaration of Human Rights in the 43 languages, from `fuxitranyu fetch udhr`), `mediawiki`
    (MediaWiki's interface translations, from `fuxitranyu fetch mediawiki`)."""
    name: str | None = None
    """Source name recorded in each document's metadata (default: the type)."""
    paths: list[str] = []
    """Files, directories or glob patterns to read (jsonl, parquet, text); the fetched folder for udhr, mediawiki."""
    held_out: bool = False
    """udhr, mediawiki: keep the whole source out of training and write it as a parallel set (`parallel/udhr.jsonl`:
    30 articles + preamble; `parallel/mediawiki.jsonl`: messages aligned by key); false: training documents."""
    text_field: str = "text"
    """Field holding the document text (jsonl, parquet, huggingface)."""
    translation_field: str | None = None
    """huggingface: a field holding {language code: text} (OPUS corpora such as MultiUN and OpenSubtitles): each
    supported language's text becomes a document of that language, instead of reading `text_field`."""
    id_field: str | None = "id"
    """Field holding a document id; missing ids become `<file>:<line>`."""
    language_field: str | None = "language"
    """Field holding a declared language code, checked against language identification."""
    language: str | None = None
    """Declared language of every document of this source (instead of a field), e.g. `fr` or `code-python`."""
    on_error: Literal["raise", "skip"] = "raise"
    """A malformed record (bad JSON, invalid UTF-8, missing text, truncated archive): stop with an error naming the
    file and line, or skip it and count it."""
    dataset: str | None = None
    """huggingface: dataset name or local path for `datasets.load_dataset`."""
    subset: str | None = None
    """huggingface: configuration name."""
    data_dir: str | None = None
    """huggingface: the `data_dir` of `load_dataset` (datasets organised by folder, e.g. starcoderdata's
    per-language folders)."""
    per_language: dict[str, str] = {}
    """huggingface: one part per language label, {label: configuration} (CulturaX: {fr: fr, zh: zh}); each part's
    documents take that label. With `per_language_as: data_dir` the values are data_dirs (starcoderdata:
    {code-python: python})."""
    per_language_as: Literal["name", "data_dir"] = "name"
    """huggingface: whether the values of `per_language` are configuration names or data_dirs."""
    approximate_size: str | None = None
    """What the source holds, for `--dry-run` and the plan (informational, e.g. "500GB" or "~2.6T tokens")."""
    split: str = "train"
    """huggingface: split to read."""
    streaming: bool = True
    """huggingface: stream instead of downloading the whole split."""
    locale_dir: str = "/usr/share/locale"
    """system: where the gettext catalogs are."""
    domains: list[str] = []
    """system: train on these gettext domains only (file names without `.mo`, e.g. coreutils); empty: every domain."""
    held_out_domains: list[str] = []
    """system: gettext domains kept out of training and written as parallel sets (`parallel/<domain>.jsonl`)."""
    max_document_chars: int = Field(4000, gt=0)
    """system, mediawiki: messages are joined into documents of at most this many characters."""
    code_roots: list[str] = []
    """system: directories scanned for source code; `stdlib` means this Python's standard library."""
    max_code_files_per_language: int | None = Field(None, gt=0)
    """system: cap on files per programming language (the first ones in sorted path order)."""
    max_code_file_bytes: int = Field(200_000, gt=0)
    """system: larger source files are skipped (generated code, data tables)."""

    @field_validator("per_language")
    @classmethod
    def _labelled(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            canonical_label(name, "per_language")
        return value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return label(value)
        except UnknownLanguageError as err:
            raise ValueError(err.message) from None

    @model_validator(mode="after")
    def _fields_for_type(self) -> SourceSpec:
        if self.type in ("jsonl", "parquet", "text", "udhr", "mediawiki") and not self.paths:
            raise ValueError(f"a {self.type} source needs `paths`")
        if self.type == "huggingface" and not self.dataset:
            raise ValueError("a huggingface source needs `dataset`")
        return self

    @property
    def source_name(self) -> str:
        return self.name or self.type

    def resolved_code_roots(self) -> list[Path]:
        return [Path(sysconfig.get_paths()["stdlib"]) if root == "stdlib" else Path(root) for root in self.code_roots]


class LanguageIdSection(Section):
    enabled: bool = True
    """Identify the language of every natural-language document (fastText lid.176, py3langid as a second vote)."""
    on_mismatch: Literal["keep", "relabel", "drop"] = "relabel"
    """When the declared language and the detected one disagree: keep the declared label, take the detected one,
    or drop the document. Counted either way."""
    min_confidence: float = Field(0.5, ge=0, le=1)
    """Below this fastText probability a detection does not count as a disagreement (short UI strings are hard)."""
    second_vote: bool = True
    """Ask py3langid too; a disagreement is only declared when neither tool agrees with the declared language.
    py3langid is much better than fastText on uz/tg/tk (measured on gettext strings: 0.8-0.9 accuracy against
    fastText's 0.3-0.5)."""


class Thresholds(Section):
    """Per-language filter thresholds; a field left unset falls back to `filters.defaults`."""

    min_chars: int | None = Field(None, ge=0)
    """Documents shorter than this many characters are dropped (`too_short`)."""
    max_chars: int | None = Field(None, gt=0)
    """Documents longer than this many characters are dropped (`too_long`)."""
    min_words: int | None = Field(None, ge=0)
    """Documents with fewer words are dropped (`too_few_words`); scripts without spaces count characters as words."""
    max_url_char_fraction: float | None = Field(None, ge=0, le=1)
    """Characters inside URLs over all characters (`urls`)."""
    max_flagged_word_fraction: float | None = Field(None, ge=0, le=1)
    """Words from the language's flagged-word list over all words (`flagged_words`)."""
    min_stop_words: int | None = Field(None, ge=0)
    """Fewer occurrences of the language's stop words mean the text is not running prose (`few_stop_words`);
    languages without a stop-word list skip this check."""
    max_duplicate_paragraph_fraction: float | None = Field(None, ge=0, le=1)
    """Fraction of paragraphs (split at blank lines) that repeat an earlier paragraph (`duplicate_paragraphs`)."""
    max_duplicate_paragraph_char_fraction: float | None = Field(None, ge=0, le=1)
    """Characters in paragraphs that repeat an earlier one, over the document's characters
    (`duplicate_paragraph_chars`)."""
    max_duplicate_line_fraction: float | None = Field(None, ge=0, le=1)
    """Fraction of lines that repeat an earlier line (`duplicate_lines`)."""
    max_duplicate_line_char_fraction: float | None = Field(None, ge=0, le=1)
    """Characters in lines that repeat an earlier line, over the document's characters (`duplicate_line_chars`)."""
    max_top_word_ngram_fraction: dict[int, float] | None = None
    """n -> limit on the characters of the most frequent word n-gram (with its spaces) times its count, over the
    document's characters (`top_word_ngram`, Gopher)."""
    max_duplicate_word_ngram_fraction: dict[int, float] | None = None
    """n -> limit on the characters of word n-grams that repeat an earlier one (each repeat counted, the first
    occurrence not), over the document's characters (`duplicate_word_ngrams`, Gopher as datatrove counts it)."""
    max_char_repetition: dict[int, float] | None = None
    """n -> limit on BLOOM's character repetition ratio: the share of n-gram occurrences taken by the ⌊√k⌋ most
    frequent repeated character n-grams (`char_repetition`)."""


DEFAULT_THRESHOLDS = Thresholds(
    min_chars=50,
    max_chars=1_000_000,
    min_words=5,
    max_url_char_fraction=0.2,
    max_flagged_word_fraction=0.01,
    min_stop_words=2,
    max_duplicate_paragraph_fraction=0.3,
    max_duplicate_paragraph_char_fraction=0.2,
    max_duplicate_line_fraction=0.3,
    max_duplicate_line_char_fraction=0.2,
    max_top_word_ngram_fraction={2: 0.2, 3: 0.18, 4: 0.16},
    max_duplicate_word_ngram_fraction={5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
    max_char_repetition={10: 0.5},
)


class FiltersSection(Section):
    enabled: bool = True
    """Run the heuristic and statistical filters."""
    defaults: Thresholds = DEFAULT_THRESHOLDS
    """Thresholds for every language (Gopher's and BLOOM's values unless the recipe says otherwise)."""
    per_language: dict[str, Thresholds] = {}
    """Overrides per language label, e.g. {zh: {min_chars: 20}}."""
    no_space_scripts: Thresholds = Thresholds(
        max_top_word_ngram_fraction={4: 0.2, 6: 0.18, 8: 0.16},
        max_duplicate_word_ngram_fraction={10: 0.15, 12: 0.14, 14: 0.13, 16: 0.12, 18: 0.11, 20: 0.10},
    )
    """Overrides for zh, ja, th, lo, km, my, where every character counts as a word: Gopher's n-gram sizes doubled,
    as a word of these languages spans about two characters."""
    code: Thresholds = Thresholds(min_chars=20, max_chars=200_000)
    """Thresholds for source code (`code-*` labels); prose filters (stop words, n-gram repetition) do not apply."""
    flagged_words: dict[str, str] = {}
    """Language label -> path of a flagged-word list (one word or phrase per line)."""
    stop_words: bool = True
    """Use the stopwordsiso lists (34 of the 43 languages have one)."""

    @field_validator("per_language", "flagged_words")
    @classmethod
    def _labels(cls, value: dict) -> dict:
        _check_labels(value)
        return value

    def thresholds(self, language: str) -> Thresholds:
        """The effective thresholds of one language: defaults (or `code`), then `no_space_scripts` for the languages
        written without spaces, then the language's own overrides."""
        if language.startswith("code-"):
            layers = [self.code]
        else:
            layers = [self.defaults]
            if language in NO_SPACE_LANGUAGES:
                layers.append(self.no_space_scripts)
        if language in self.per_language:
            layers.append(self.per_language[language])
        merged = layers[0].model_dump()
        for layer in layers[1:]:
            merged.update(layer.model_dump(exclude_none=True))
        return Thresholds(**merged)


class PerplexitySection(Section):
    enabled: bool = False
    """Drop documents whose KenLM perplexity is too high (paper 3.2, as BLOOM). Needs `kenlm`, `sentencepiece` and
    a built `lmplz` (`fuxitranyu build-kenlm`)."""
    reference: list[str] = []
    """JSONL files or directories of reference text per language (a `language` field) to train the models on; empty:
    the documents that passed the other filters."""
    order: int = Field(5, ge=2, le=9)
    """n-gram order of the KenLM models (BLOOM: 5)."""
    vocab_size: int = Field(8000, ge=100)
    """SentencePiece vocabulary of each language's model."""
    max_percentile: float = Field(95.0, gt=0, le=100)
    """Drop documents above this percentile of their language's perplexities."""
    max_perplexity: dict[str, float] = {}
    """Absolute per-language thresholds; they take precedence over the percentile."""
    min_reference_documents: int = Field(50, ge=1)
    """A language with less reference text gets no model, and its documents are kept (counted as `no_model`)."""
    max_reference_documents: int = Field(20_000, ge=1)
    """Reference documents per language used to train and calibrate its model (the first ones in file order)."""


class MinHashConfig(Section):
    """Every parameter that changes signatures, buckets or clusters; `str(config)` names their folder."""

    model_config = ConfigDict(frozen=True)

    word_ngrams: int = Field(5, ge=1, le=MAX_NGRAM)
    """Shingle size, in words, for scripts that separate words with spaces."""
    char_ngrams: int = Field(5, ge=1, le=MAX_NGRAM)
    """Shingle size, in characters, for scripts written without spaces (Han, Kana, Thai, Lao, Khmer, Myanmar)."""
    code_ngrams: int = Field(5, ge=1, le=MAX_NGRAM)
    """Shingle size, in identifier/number/operator tokens, for source code (labels `code-*`)."""
    bands: int = Field(16, ge=1)
    """LSH bands: two documents are candidates when all the rows of one band agree."""
    rows: int = Field(7, ge=1)
    """Permutations per band. Pairs of Jaccard similarity s become candidates with probability 1-(1-s^rows)^bands:
    16 × 7 finds 98% of pairs at s = 0.8, 75% at 0.7 and 12% at 0.5 (threshold ≈ (1/bands)^(1/rows) = 0.67)."""
    seed: int = 1
    """Seeds the permutations and the micro-dedup's choices; every task must use the same."""
    num_shards: int = Field(16, ge=1)
    """Band-key shards; a bucket task holds one shard, about 16 × bands × documents / num_shards bytes."""
    per_language: bool = False
    """Only documents with the same `metadata["language"]` can be duplicates; False dedups across languages."""

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def __str__(self) -> str:
        scope = "perlang" if self.per_language else "crosslang"
        return (
            f"minhash-{self.word_ngrams}w{self.char_ngrams}c{self.code_ngrams}t-{self.bands}x{self.rows}"
            f"-seed{self.seed}-{self.num_shards}shards-{scope}"
        )


class MicroDedupConfig(Section):
    """The paper's multi-turn micro-deduplication: a pool of chunks, deduplicated a random handful at a time."""

    model_config = ConfigDict(frozen=True)

    chunk_size: int = Field(100_000, ge=1)
    """Documents per chunk of the initial pool (consecutive documents in input order)."""
    chunks_per_round: int = Field(4, ge=1)
    """Chunks drawn from the pool in each round; their documents are deduplicated among themselves."""
    min_removal: float = Field(0.01, ge=0, le=1)
    """A round that removes less than this fraction of the documents it looked at counts towards stopping."""
    patience: int = Field(1, ge=1)
    """Stop after this many such rounds in a row. 1 is the paper's rule; more guards against a round that, by chance,
    drew only chunks whose documents were already deduplicated together."""
    max_rounds: int = Field(50, ge=1)
    """Stop after this many rounds whatever they remove."""


class DedupSection(Section):
    enabled: bool = True
    """MinHash near-duplicate removal over all sources (paper 3.2)."""
    minhash: MinHashConfig = MinHashConfig()
    """Shingles, bands × rows, seed, shards, within or across languages."""
    micro: MicroDedupConfig | None = None
    """The paper's multi-turn micro-deduplication instead of one complete pass; null: complete dedup."""


class RayExecution(Section):
    """Where and how the `ray` executor runs the data stage's tasks (datatrove's RayPipelineExecutor)."""

    address: str | None = None
    """The Ray cluster: `auto` (a cluster this machine belongs to), `ray://<head>:10001`, or null: the RAY_ADDRESS
    environment variable if set, else a Ray instance started here and stopped at the end of the stage."""
    cpus_per_task: int = Field(1, ge=1)
    """CPUs reserved per task."""
    mem_per_cpu_gb: float = Field(2.0, gt=0)
    """Memory reserved per CPU, in GB."""


class SlurmExecution(Section):
    """How the `slurm` executor submits the data stage's tasks (datatrove's SlurmPipelineExecutor, one array job per
    phase); the stage waits for each job and reads its outputs from the shared file system."""

    partition: str = "cpu"
    """Slurm partition."""
    time: str = "24:00:00"
    """Time limit per task (Slurm's format)."""
    cpus_per_task: int = Field(1, ge=1)
    """CPUs per task."""
    mem_per_cpu_gb: float = Field(2.0, gt=0)
    """Memory per CPU, in GB."""
    qos: str = "normal"
    """Slurm quality of service."""
    venv_path: str | None = None
    """A virtual environment to activate on the nodes (the one fuxitranyu is installed in)."""
    sbatch_args: dict[str, str] = {}
    """Further sbatch options, e.g. {account: my-project}."""
    poll_seconds: int = Field(60, ge=1)
    """How often the stage checks whether a submitted phase has finished."""


class DataSection(Section):
    sources: list[SourceSpec] = [SourceSpec(type="system")]
    """Where documents come from; all sources are processed together."""
    languages: LanguageList = []
    """Keep only these labels (ISO codes and `code-*`); empty: all 43 + 16 supported."""
    language_id: LanguageIdSection = LanguageIdSection()
    filters: FiltersSection = FiltersSection()
    perplexity: PerplexitySection = PerplexitySection()
    dedup: DedupSection = DedupSection()
    keep_dropped: bool = True
    """Write dropped documents to `dropped/<step>/` with their reason, so nothing is silently lost."""
    tasks: int = Field(2, ge=1)
    """Shards of the input (datatrove tasks); more tasks than workers is fine."""
    workers: int = Field(2, ge=1)
    """Processes running tasks at once on this machine."""
    executor: Literal["local", "slurm", "ray"] = "local"
    """datatrove executor: local processes, a Slurm cluster, or Ray. The output does not depend on it."""
    ray: RayExecution = RayExecution()
    """Settings of the `ray` executor."""
    slurm: SlurmExecution = SlurmExecution()
    """Settings of the `slurm` executor."""

    @property
    def language_set(self) -> frozenset[str]:
        return frozenset(self.languages or LABELS)
