"""The pretrain stage's folder, beside what every training stage writes (`fuxitranyu.stage`: model/, metrics.jsonl,
checkpoints/, and `decisions.json`): the layout of one checkpoint lives with its reader in `checkpoint.py`."""

from fuxitranyu.stage import Stats

TENSORBOARD = "tensorboard"
"""TensorBoard event files of the logged metrics (when tensorboard is installed)."""


class ChosenPrecision(Stats):
    precision: str
    reason: str


class PretrainStats(Stats):
    """What the pretrain stage's manifest reports and the report reads."""

    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    precision: ChosenPrecision
    rollbacks: int
    skipped_steps: int
