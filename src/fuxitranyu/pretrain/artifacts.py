"""The pretrain stage's folder, beside what every training stage writes (`fuxitranyu.stage`: model/, metrics.jsonl,
checkpoints/, and `decisions.json`): the layout of one checkpoint lives with its reader in `checkpoint.py`."""

TENSORBOARD = "tensorboard"
"""TensorBoard event files of the logged metrics (when tensorboard is installed)."""
