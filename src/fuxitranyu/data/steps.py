"""The uniform shape of our data steps: datatrove `PipelineStep`s that count, per language, what they see, keep and
drop (documents and characters, by reason), and can write what they drop aside with its reason.

Counters are datatrove stats, so its executors merge them across tasks; `fuxitranyu.data.accounting` turns the merged
`stats.json` into the per-step, per-language table of the manifest.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

UNKNOWN = "unknown"


def language_of(doc: Document) -> str:
    return doc.metadata.get("language") or UNKNOWN


class CountingStep(PipelineStep):
    """A step with per-language counters: `in/`, `kept/` and `dropped/<reason>/` + `<lang>/docs|chars` (a filter
    that relabels counts `in` under the old language and `kept` under the new one),
    `read/<lang>/...` for readers and `skipped/<reason>` for records that never became documents."""

    def count(self, prefix: str, doc: Document) -> None:
        lang = language_of(doc)
        self.stat_update(f"{prefix}/{lang}/docs")
        self.stat_update(f"{prefix}/{lang}/chars", value=len(doc.text))

    def count_read(self, doc: Document) -> None:
        self.count("read", doc)

    def count_skip(self, reason: str, n: int = 1) -> None:
        self.stat_update(f"skipped/{reason}", value=n)


class DocumentFilter(CountingStep):
    """`decide(doc)` returns None to keep a document or the reason to drop it."""

    type = "🔻 - FILTER"

    def __init__(self, exclusion_writer: DiskWriter | None = None):
        super().__init__()
        self.exclusion_writer = exclusion_writer

    @abstractmethod
    def decide(self, doc: Document) -> str | None: ...

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        writer_context = self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext()
        with writer_context as writer:
            for doc in data:
                self.count("in", doc)
                with self.track_time():
                    reason = self.decide(doc)
                if reason is None:
                    self.count("kept", doc)
                    yield doc
                    continue
                self.count(f"dropped/{reason}", doc)
                if writer is not None:
                    doc.metadata["drop_reason"] = reason
                    writer.write(doc, rank)
