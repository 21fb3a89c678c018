"""The sft and dpo stages' folders (each), beside what every training stage writes (`fuxitranyu.stage`: model/,
metrics.jsonl, checkpoints/, and `decisions.json`)."""


from fuxitranyu.pretrain.artifacts import ChosenPrecision
from fuxitranyu.stage import Stats

DATA_STATS = "data_stats.json"
"""Per set and language: read, kept, dropped by the language filter, taken into the mixture."""
MIX_TABLE = "mix.md"
"""The mixture as a Markdown table (also printed when the stage runs)."""
DEMO = "demo.jsonl"
"""The demo examples built from held-out parallel sets, in TRL's layout (when the recipe uses demo data)."""


class PostTrainStats(Stats):
    """What the sft and dpo stages' manifests report and the report reads."""

    base_model: str
    examples: int
    steps: int
    train_loss: float | None
    precision: ChosenPrecision
