"""The evaluate stage's folder, named once: the stage and `fuxitranyu evaluate --out DIR` write the same layout, and the
report and the balance experiment read it through these names."""


from fuxitranyu.stage import Stats

RESULTS = "results.json"
"""Every model's numbers per task, metric and language, with the suite and the data the tasks read."""
TABLES_MD = "tables.md"
"""The tables in the paper's layout, with the spread across languages and the paper's numbers."""
TABLES = "tables"
"""`tables/<benchmark>.<metric>.csv`: one table per benchmark and metric."""
PLOTS = "plots"
"""`plots/<benchmark>.<metric>.png`: per-language bars, one per table."""
TASKS = "tasks"
"""The lm-eval task YAML files the run used (the offline tasks and the suite's own)."""
DATA = "data"
"""The offline tasks' data, cut from the held-out parallel sets."""
GENERATIONS = "generations"
"""`generations/<model>/<task>.jsonl`: what each model generated, for the generative tasks."""
ADAPTATION = "adaptation-{model}"
"""With `base` among the models: `adaptation-<model>.md/.json/.png`, bits per byte of each adapted model against the
base it continued, per language (`evaluate.adaptation`)."""
SWEEP = "sweep"
"""`sweep/<run>/step-NNNNNN.json` and `sweep/<run>/curves/*.png`: a checkpoints folder evaluated step by step."""


class EvaluateStats(Stats):
    """What the evaluate stage's manifest reports and the report reads."""

    suite: str
    tasks: int
    adaptation: dict[str, dict] = {}
    """Per adapted model: the mean change of bits per byte on the target languages and on the others."""
