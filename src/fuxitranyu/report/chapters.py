"""One chapter per stage, read from the stage's artifacts only (manifests, JSON, CSV, PNG): the report never
recomputes what a stage measured."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fuxitranyu.analyze.artifacts import MEAN_SIMILARITY_CSV, NEURONS, REPRESENTATIONS
from fuxitranyu.data.artifacts import DataStats
from fuxitranyu.evaluate.artifacts import ADAPTATION, PLOTS, TABLES, EvaluateStats
from fuxitranyu.mix.artifacts import read_index, read_plan
from fuxitranyu.posttrain.artifacts import DATA_STATS, PostTrainStats
from fuxitranyu.pretrain.artifacts import PretrainStats
from fuxitranyu.report import figures
from fuxitranyu.report.document import Chapter, Figure, Table, Text
from fuxitranyu.stage import METRICS, read_manifest
from fuxitranyu.tokenizer.artifacts import FERTILITY_JSON, TokenizerStats


def json_lines(path: Path) -> list[dict]:
    """The records of a JSONL file (none if it is missing), skipping a last line cut by a kill."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return rows


def _number(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.3f}"


def overview(recipe, manifests: dict[str, dict]) -> Chapter:
    rows = [[name, f"{m.get('seconds', 0):,.1f} s", m.get("created", ""), m["fingerprint"][:12]]
            for name, m in manifests.items()]
    total = sum(m.get("seconds", 0) for m in manifests.values())
    versions = next(iter(manifests.values()), {}).get("versions", {})
    chapter = Chapter("Overview", [
        Text(f"Recipe `{recipe.name}` (seed {recipe.seed}), {len(manifests)} stages, {total / 60:,.1f} minutes of "
             f"stage time. Every number below is read from the stages' artifacts in {recipe.run_dir}."),
        Table(["stage", "time", "finished", "fingerprint"], rows, "Stages"),
        Table(["library", "version"], [[k, v] for k, v in versions.items()], "Versions")])
    return chapter


def data(stage_dir: Path, manifest: dict) -> Chapter:
    stats = DataStats.of(manifest, stage_dir)
    final = stats.final
    languages = sorted(final, key=lambda lang: -final[lang]["chars"])
    chapter = Chapter("Data", [Text(f"{sum(v['docs'] for v in final.values()):,} clean documents, "
                                    f"{sum(v['chars'] for v in final.values()):,} characters in {len(final)} "
                                    f"languages; held-out parallel sets: "
                                    f"{', '.join(f'{k} ({v} units)' for k, v in stats.parallel_sets.items())}.")])
    chapter.blocks.append(Figure("data-characters.png", figures.bars(
        languages, {"characters": [final[lang]["chars"] for lang in languages]}, "characters (log)", log=True),
        "Clean characters per language"))
    drops = []
    for step, table in stats.steps.items():
        reasons: dict[str, list[int]] = {}
        for row in table["languages"].values():
            for reason, counts in row.get("dropped", {}).items():
                total = reasons.setdefault(reason, [0, 0])
                total[0] += counts.get("docs", 0)
                total[1] += counts.get("chars", 0)
        drops += [[step, reason, f"{docs:,}", f"{chars:,}"] for reason, (docs, chars) in sorted(reasons.items())]
        drops += [[step, f"{reason} (record skipped)", f"{count:,}", ""] for reason, count in table["skipped"].items()]
    chapter.blocks.append(Table(["step", "reason", "documents", "characters"], drops, "What each step removed"))
    chapter.blocks.append(Table(["language", "documents", "characters"],
                                [[lang, f"{final[lang]['docs']:,}", f"{final[lang]['chars']:,}"] for lang in languages],
                                "Clean documents per language"))
    return chapter


def tokenizer(stage_dir: Path, manifest: dict) -> Chapter:
    vocabulary = TokenizerStats.of(manifest, stage_dir).vocabulary
    chapter = Chapter("Tokenizer", [Text(f"Byte-level BPE: {vocabulary.size:,} ids, {vocabulary.learned:,} "
                                         f"learned, {vocabulary.dummy_tokens} dummy; special tokens "
                                         f"{vocabulary.special_tokens}.")])
    path = stage_dir / FERTILITY_JSON
    if path.is_file():
        measured = json.loads(path.read_text(encoding="utf-8"))["measurements"]
        measured.sort(key=lambda m: m["fertility"])
        chapter.blocks.append(Figure("tokenizer-fertility.png", figures.bars(
            [m["language"] for m in measured], {"tokens per word": [m["fertility"] for m in measured]},
            "tokens per word"), "Fertility on the held-out parallel sets (characters are words in zh ja th lo km my)"))
        chapter.blocks.append(Table(["language", "tokens per word", "bytes per token", "units"],
                                    [[m["language"], f"{m['fertility']:.2f}", f"{m['bytes_per_token']:.2f}",
                                      m["units"]] for m in measured], "Fertility per language"))
    return chapter


def mix(stage_dir: Path, manifest: dict) -> Chapter:
    plan, index = read_plan(stage_dir), read_index(stage_dir)
    rows = plan["languages"]
    labels = [row["language"] for row in rows]
    roles = any(row.get("role", "mix") != "mix" for row in rows)
    chapter = Chapter("Mix", [
        Text(f"Strategy {plan['strategy']}, budget {plan['budget']:,} tokens; {index['total_sequences']:,} sequences "
             f"of {index['context_length']} tokens. Unigram entropy of the training targets: "
             f"{index.get('unigram_entropy', float('nan')):.3f} nats (the loss of a model that learned no context)."),
        Figure("mix-tokens.png", figures.bars(labels, {
            "planned": [row["tokens"] for row in rows],
            "sampled": [index["sampled_tokens"].get(lang, 0) for lang in labels]}, "tokens (log)", log=True),
            "Planned and sampled tokens per language"),
        Table(["language", *(["role"] if roles else []), "available", "planned", "sampled", "share", "epochs",
               "validation sequences"],
              [[row["language"], *([row.get("role", "mix")] if roles else []), f"{row['available']:,}",
                f"{row['tokens']:,}", f"{index['sampled_tokens'].get(row['language'], 0):,}", f"{row['share']:.2%}",
                f"{row['epochs']:.2f}", index.get("validation", {}).get(row["language"], {}).get("sequences", 0)]
               for row in rows],
              "Plan per language (targets and replayed languages)" if roles else "Plan per language")])
    for warning in plan.get("warnings", []):
        chapter.blocks.insert(1, Text(f"Warning: {warning}"))
    return chapter


def pretrain(stage_dir: Path, manifest: dict, mix_index: dict | None, available: dict[str, int], report) -> Chapter:
    """`available`: tokens of each language in the data (the mix plan's); the curves drawn are of the largest."""
    rows = json_lines(stage_dir / METRICS)
    steps = [row for row in rows if "event" not in row]
    validations = [row for row in rows if row.get("event") == "validation"]
    stats = PretrainStats.of(manifest, stage_dir)
    entropy = (mix_index or {}).get("unigram_entropy")
    chapter = Chapter("Pretraining", [Text(
        f"{stats.steps:,} steps, {stats.tokens:,} tokens in {stats.seconds:,.0f} s "
        f"({stats.tokens_per_s:,.0f} tokens/s); precision {stats.precision.precision} "
        f"({stats.precision.reason}); rollbacks {stats.rollbacks}, skipped steps {stats.skipped_steps}.")])
    tokens = [row["tokens"] for row in steps]
    reference = ("unigram entropy", entropy) if entropy else None
    chapter.blocks.append(Figure("pretrain-loss.png", figures.lines(
        {"loss": (tokens, [row["loss"] for row in steps])}, "tokens", "training loss (nats)", reference),
        "Training loss"))
    sizes = available or (mix_index or {}).get("sampled_tokens", {})
    languages = sorted(sizes, key=lambda lang: -sizes[lang])[:report.max_languages]
    curves = {}
    for language in languages:
        points = [(row["tokens"], row["loss_by_language"][language]) for row in steps
                  if language in row.get("loss_by_language", {})]
        if points:
            curves[language] = ([p[0] for p in points], figures.smooth([p[1] for p in points],
                                                                      report.smoothing_window))
    if curves:
        chapter.blocks.append(Figure("pretrain-loss-by-language.png", figures.lines(
            curves, "tokens", "training loss (nats)", reference),
            f"Training loss per language, mean of the last {report.smoothing_window} logged steps "
            f"({len(curves)} languages with the most data)"))
    if validations:
        curves = {"mean": ([v["tokens"] for v in validations], [v["loss"] for v in validations])}
        for language in languages:
            curves[language] = ([v["tokens"] for v in validations],
                                [v["loss_by_language"].get(language, float("nan")) for v in validations])
        chapter.blocks.append(Figure("pretrain-validation.png", figures.lines(
            curves, "tokens", "validation loss (nats)", reference), "Validation loss per language"))
        last = validations[-1]
        below = f"; {entropy - last['loss']:.2f} nats below the unigram entropy" if entropy else ""
        chapter.blocks.append(Text(f"Final validation loss, mean over languages: {last['loss']:.3f}{below}."))
        chapter.blocks.append(Table(["language", "validation loss"],
                                    [[lang, f"{value:.3f}"] for lang, value in
                                     sorted(last["loss_by_language"].items(), key=lambda kv: kv[1])],
                                    "Final validation loss per language"))
    return chapter


def posttrain(name: str, stage_dir: Path, manifest: dict) -> Chapter:
    rows = [row for row in json_lines(stage_dir / METRICS) if "loss" in row and "step" in row]
    stats = PostTrainStats.of(manifest, stage_dir)
    loss = stats.train_loss
    chapter = Chapter(name.upper(), [Text(
        f"Base model {stats.base_model}; {stats.examples:,} examples, {stats.steps} steps, "
        f"train loss {'?' if loss is None else _number(loss)}; precision "
        f"{stats.precision.precision}.")])
    if rows:
        curves = {"loss": ([r["step"] for r in rows], [r["loss"] for r in rows])}
        if any("rewards/margins" in r for r in rows):
            curves["reward margin"] = ([r["step"] for r in rows], [r.get("rewards/margins", 0) for r in rows])
        chapter.blocks.append(Figure(f"{name}-curves.png", figures.lines(curves, "step", "value"),
                                     f"{name.upper()} loss" + (" and reward margin" if len(curves) > 1 else "")))
    stats_path = stage_dir / DATA_STATS
    if stats_path.is_file():
        data = json.loads(stats_path.read_text(encoding="utf-8"))
        chapter.blocks.append(Table(["set", "read", "kept", "dropped", "taken"],
                                    [[set_name, s.get("read"), s.get("kept"), s.get("dropped"), s.get("taken")]
                                     for set_name, s in data.get("sets", {}).items()], "Training data"))
    return chapter


def _csv_table(path: Path, caption: str) -> Table:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return Table(rows[0], rows[1:], caption)


def _results_tables(path: Path, caption: str) -> list[Table]:
    """A results table (a row per model, a column per language, then the spread) as two that fit a page at any
    number of languages: the average and spread per model, and the languages as rows with a column per model."""
    whole = _csv_table(path, caption)
    split = whole.header.index("avg")
    languages, models = whole.header[1:split], [row[0] for row in whole.rows]
    spread = Table(["model", *whole.header[split:]], [[row[0], *row[split:]] for row in whole.rows],
                   f"{caption}: average and spread across languages")
    per_language = Table(["language", *models], [[lang, *(row[1 + i] for row in whole.rows)]
                                                  for i, lang in enumerate(languages)], f"{caption}: per language")
    return [spread, per_language]


def _adaptation(stage_dir: Path, model: str, result: dict) -> list:
    """Gain against forgetting of one adapted model: the summary, the per-language table, the figure."""
    name = ADAPTATION.format(model=model)
    rows = json.loads((stage_dir / f"{name}.json").read_text(encoding="utf-8"))["per_language"]

    def percent(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:+.1f}%"

    worst = result.get("others_worst") or {}
    gain, others = percent(result["targets_mean_change"]), percent(result["others_mean_change"])
    blocks = [Text(f"{model} against the base model it continued: bits per byte {gain} on the target languages "
                   f"(mean), {others} on the others"
                   + (f" (worst {worst['language']}: {percent(worst['change'])})" if worst else "") + "."),
              Table(["language", "role", "base", model, "change"],
                    [[r["language"], "target" if r["target"] else "other", f"{r['base']:.3f}", f"{r['adapted']:.3f}",
                      percent(r["change"])] for r in rows], f"Bits per byte: base → {model}")]
    if (stage_dir / f"{name}.png").is_file():
        blocks.append(Figure(f"evaluate-{name}.png", (stage_dir / f"{name}.png").read_bytes(),
                             f"Gain on the targets, change on the others: {model}"))
    return blocks


def evaluate(stage_dir: Path, manifest: dict) -> Chapter:
    stats = EvaluateStats.of(manifest, stage_dir)
    chapter = Chapter("Evaluation", [Text(
        f"Suite {stats.suite}, {stats.tasks} tasks through lm-evaluation-harness; every table "
        f"shows the spread across languages (worst, best, range, σ, CV) and, where the paper reports the task, its "
        f"models' numbers as rows marked (paper).")])
    for model, result in stats.adaptation.items():
        chapter.blocks += _adaptation(stage_dir, model, result)
    for path in sorted((stage_dir / TABLES).glob("*.csv")):
        chapter.blocks += _results_tables(path, path.stem.replace(".", " — "))
        plot = stage_dir / PLOTS / f"{path.stem}.png"
        if plot.is_file():
            chapter.blocks.append(Figure(f"evaluate-{plot.name}", plot.read_bytes(), path.stem))
    return chapter


def analyze(stage_dir: Path, manifest: dict) -> Chapter:
    chapter = Chapter("Analyses", [Text(
        "Neuron importance (paper 6.1: |∂L/∂h · h| per unit, summed per component and layer, per language) and "
        "representation similarity (6.2: cosine of the mean last-token state per language, per layer).")])
    captions = {"layers": "Importance per layer and language (Figure 4)",
                "components": "Importance per component and layer (Figure 5)",
                "heatmap": "Similarity between languages (Figure 3)",
                "mean_similarity": "Mean similarity per layer (Figure 6)",
                "evolution": "Across pretraining checkpoints"}
    for folder in (NEURONS, REPRESENTATIONS):
        for path in sorted((stage_dir / folder).glob("*.png")):
            caption = next((text for key, text in captions.items() if path.stem.startswith(key)), path.stem)
            chapter.blocks.append(Figure(f"{folder}-{path.name}", path.read_bytes(), f"{caption}: {path.stem}"))
    mean_path = stage_dir / REPRESENTATIONS / MEAN_SIMILARITY_CSV
    if mean_path.is_file():
        chapter.blocks.append(_csv_table(mean_path, "Mean similarity between languages per layer"))
    return chapter


def recipe_text(recipe_yaml: str) -> Chapter:
    return Chapter("Recipe", [Text("    " + recipe_yaml.replace("\n", "\n    "))])


def stage_chapters(recipe, inputs: dict[str, Path], report) -> list[Chapter]:
    from fuxitranyu.recipe import recipe_to_yaml

    manifests: dict[str, Any] = {name: read_manifest(path) for name, path in inputs.items()}
    manifests = {name: m for name, m in manifests.items() if m is not None}
    mix_index = read_index(inputs["mix"]) if "mix" in inputs else None
    mix_plan = read_plan(inputs["mix"]) if "mix" in inputs else {}
    available = {row["language"]: row["available"] for row in mix_plan.get("languages", [])}
    builders = {"data": lambda d, m: data(d, m), "tokenizer": lambda d, m: tokenizer(d, m),
                "mix": lambda d, m: mix(d, m), "pretrain": lambda d, m: pretrain(d, m, mix_index, available, report),
                "sft": lambda d, m: posttrain("sft", d, m), "dpo": lambda d, m: posttrain("dpo", d, m),
                "evaluate": lambda d, m: evaluate(d, m), "analyze": lambda d, m: analyze(d, m)}
    chapters = [overview(recipe, manifests)]
    chapters += [builders[name](inputs[name], manifest) for name, manifest in manifests.items() if name in builders]
    chapters.append(recipe_text(recipe_to_yaml(recipe)))
    return chapters
