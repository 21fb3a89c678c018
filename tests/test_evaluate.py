"""The evaluate stage: suites against lm-eval's own task index, offline tasks end to end through lm-eval on a tiny
model, bits per byte by hand, ROUGE by hand in Bengali, Thai and Chinese, chrF against sacrebleu, the missing-data
message, the checkpoint sweep's reuse, and the stage inside the pipeline."""

from __future__ import annotations

import json
import math
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from fuxitranyu.errors import FuxiError
from fuxitranyu.evaluate import taskgen
from fuxitranyu.evaluate.balance import balance
from fuxitranyu.evaluate.config import OfflineTasks
from fuxitranyu.evaluate.harness import ModelToEvaluate, Settings, evaluate_model, task_set
from fuxitranyu.evaluate.reference import paper_results
from fuxitranyu.evaluate.results import Table, table_csv
from fuxitranyu.evaluate.rouge import scores
from fuxitranyu.evaluate.run import prepare
from fuxitranyu.evaluate.suite import load_suite, our_tasks_dir
from fuxitranyu.evaluate.sweep import sweep
from fuxitranyu.evaluate.tasks_ready import prepare_tasks

# The paper's few-shot counts (section 5, Tables 5 and 6), typed from the paper.
PAPER_SHOTS = {"m-ARC": 25, "m-HellaSwag": 10, "m-MMLU": 5, "XWinograd": 5, "XCOPA": 0, "XStoryCloze": 0,
               "Translation": 0, "XL-Sum": 0}
FAST = Settings(precision="fp32", batch_size=8, bootstrap_iters=20, max_new_tokens=6, seed=3)

WORDS = {
    "en": "open the file save all windows close print page",
    "de": "öffne die Datei speichere alle Fenster schließe drucke Seite",
    "zh": "打开 文件 保存 所有 窗口 关闭 打印 页面 设置",
    "th": "เปิด ไฟล์ บันทึก ทั้งหมด หน้าต่าง ปิด พิมพ์ หน้า ตั้งค่า",
    "bn": "খুলুন ফাইল সংরক্ষণ সব জানালা বন্ধ মুদ্রণ পাতা সেটিং",
}


def parallel_units(count: int = 14) -> list[dict]:
    units = []
    for i in range(count):
        picks = [(i * 7 + k * 3) % 9 for k in range(2 + i % 3)]
        units.append({"id": f"u{i:02d}", "texts": {lang: " ".join(words.split()[p] for p in picks) + f" {i}"
                                                   for lang, words in WORDS.items()}})
    return units


def save_tiny_model(directory: Path, seed: int = 0) -> Path:
    from fuxitranyu.model import FuxiTranyuForCausalLM, preset_config
    from fuxitranyu.tokenizer.layout import VocabularyLayout
    from fuxitranyu.tokenizer.train import save_pretrained, train_bpe

    layout = VocabularyLayout(320, True, 64)
    tokenizer, _ = train_bpe([t for u in parallel_units() for t in u["texts"].values()] * 3, layout)
    save_pretrained(tokenizer, directory, True)
    torch.manual_seed(seed)
    config = preset_config("tiny", vocab_size=layout.size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    FuxiTranyuForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, tiny_model):
    """The `local` suite prepared from tiny parallel units and run once on the tiny model."""
    out = tmp_path_factory.mktemp("local")
    evaluation = prepare(load_suite("local"), out, None, parallel_units(), OfflineTasks(units_per_language=10,
                         translation_units=3, min_units=8), seed=1)
    result = evaluate_model(ModelToEvaluate("tiny", str(tiny_model)), evaluation.tasks, FAST)
    return evaluation, result


# ----------------------------------------------------------------------------------------------------------------
# Suites and task files against lm-eval's own index


@pytest.fixture(scope="session")
def lm_eval_index():
    """lm-eval's full task index (its ~15k built-in tasks) plus ours: slow to build, so once per session."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(our_tasks_dir())).task_index


@pytest.mark.parametrize("name", ["paper-base", "paper-chat"])
def test_paper_suites_map_to_lm_eval_tasks_with_the_papers_shots(name, lm_eval_index):
    suite = load_suite(name)
    tasks = suite.tasks()
    generative = {"Translation", "XL-Sum"} if name == "paper-base" else set()
    assert {t.benchmark for t in tasks} == set(PAPER_SHOTS) - generative
    for task in tasks:
        entry = lm_eval_index.get(task.task)
        assert entry is not None, f"{task.task} is not a task of the installed lm-eval (or ours)"
        assert Path(entry.yaml_path).parent == task.folder, task.task
        assert task.shots == PAPER_SHOTS[task.benchmark], task.task
        config = entry.cfg
        if task.benchmark in ("XCOPA", "XStoryCloze", "m-MMLU") or task.task.startswith(("arc_", "hellaswag_")):
            if task.task not in ("arc_challenge",):
                assert config["dataset_name"] == task.language, task.task
    # the languages of every benchmark are those of the paper's per-language table
    for benchmark in suite.benchmarks:
        languages = {r.language for r in paper_results() if r.benchmark == benchmark.name and r.language != "avg"}
        assert set(benchmark.languages) == languages, benchmark.name


def test_local_suite_tasks_exist_for_every_language(lm_eval_index):
    from fuxitranyu.languages import NATURAL_LANGUAGES

    codes = tuple(language.code for language in NATURAL_LANGUAGES)
    tasks = load_suite("local").tasks({"parallel": codes, "parallel-targets": tuple(c for c in codes if c != "en")})
    assert len(tasks) == 43 + 2 * 42
    missing = [t.task for t in tasks if t.task not in lm_eval_index]
    assert not missing


def test_generated_task_files_match_the_generator():
    expected = taskgen.generated_files()
    root = our_tasks_dir()
    on_disk = {str(p.relative_to(root)): p.read_text(encoding="utf-8")
               for p in root.rglob("*.yaml") if p.read_text(encoding="utf-8").startswith(taskgen.HEADER)}
    assert on_disk.keys() == expected.keys()
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert not stale, f"run `python -m fuxitranyu.evaluate.taskgen`: {stale[:3]}"


def test_paper_numbers_reproduce_the_papers_averages():
    """Tables 7-13 averaged per model give Tables 5-6, except where the paper itself disagrees (checked by hand)."""
    paper_inconsistent = {("BLOOMZ-7B1", "XWinograd"), ("FuxiTranyu-8B-DPO", "XWinograd"),
                          ("FuxiTranyu-8B-SFT", "XWinograd"), ("Llama-2-Chat-7B", "XWinograd"),
                          ("Mistral-7B-Instruct-v0.1", "XWinograd"), ("PolyLM-MultiAlpaca-13B", "XWinograd"),
                          ("Llama-2-7B", "XCOPA"), ("LLaMAX2-7B", "XCOPA"), ("Llama-2-Chat-7B", "m-MMLU")}
    per_language: dict[tuple[str, str], list[float]] = {}
    averages = {}
    for row in paper_results():
        key = (row.model, row.benchmark)
        if row.language == "avg":
            averages[key] = row.value
        elif row.table != 14:
            per_language.setdefault(key, []).append(row.value)
    checked = 0
    for key, values in per_language.items():
        if key in averages and key not in paper_inconsistent:
            assert abs(statistics.fmean(values) - averages[key]) <= 0.06, key
            checked += 1
    assert checked == 75
    assert ("FuxiTranyu-8B", "XCOPA") in averages and averages[("FuxiTranyu-8B", "XCOPA")] == 60.5


def test_suite_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks:\n  - {name: X, shots: 0, metrics: [acc], languages: [de], task: 'no/x_{language}'}\n")
    with pytest.raises(FuxiError, match="lm_eval/<folder>/<task>"):
        load_suite(bad).tasks()
    with pytest.raises(FuxiError, match="no suite 'paper-bse'"):
        load_suite("paper-bse")


# ----------------------------------------------------------------------------------------------------------------
# Metrics by hand


def test_multilingual_rouge_hand_computed():
    # Bengali: 4 words each (vowel signs are combining marks, kept inside the word), 3 shared, 1 of 3 bigrams shared
    bn = scores("আমি রোজ ভাত খাই।", "আমি রোজ রুটি খাই।", "bn")
    assert bn == pytest.approx({"rouge1": 3 / 4, "rouge2": 1 / 3, "rougeL": 3 / 4})
    # Thai, characters with their marks: แ ม ว กิ น ป ล า vs แ ม ว กิ น ข้ า ว: 6 of 8 shared, 4 of 7 bigrams, LCS 6
    th = scores("แมวกินปลา", "แมวกินข้าว", "th")
    assert th == pytest.approx({"rouge1": 6 / 8, "rouge2": 4 / 7, "rougeL": 6 / 8})
    # Chinese characters: 我喜欢吃 shared (4 of 6), 3 of 5 bigrams
    zh = scores("我喜欢吃苹果。", "我喜欢吃香蕉。", "zh")
    assert zh == pytest.approx({"rouge1": 4 / 6, "rouge2": 3 / 5, "rougeL": 4 / 6})
    # whitespace ROUGE (rouge_score's default, which lm-eval's ROUGE uses) scores all three zero
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rouge1"])
    assert all(default.score(a, b)["rouge1"].fmeasure == 0 for a, b in
               [("আমি রোজ ভাত খাই।", "আমি রোজ রুটি খাই।"), ("แมวกินปลา", "แมวกินข้าว"), ("我喜欢吃苹果。", "我喜欢吃香蕉。")])
    # English keeps the Porter stemmer: "cats running" vs "cat runs" share both stems
    assert scores("cats running", "cat runs", "en")["rouge1"] == pytest.approx(1.0)


def test_balance_hand_computed():
    stats = balance({"de": 0.8, "fr": 0.6, "th": 0.2, "zh": 0.6})
    assert stats.mean == pytest.approx(0.55)
    assert stats.std == pytest.approx(math.sqrt((0.25 ** 2 + 0.05 ** 2 + 0.35 ** 2 + 0.05 ** 2) / 4))
    assert (stats.worst, stats.best, stats.lagging) == (("th",), ("de",), ("th",))
    assert stats.range == pytest.approx(0.6) and stats.cv == pytest.approx(stats.std / 0.55)
    lower = balance({"de": 1.0, "fr": 1.1, "th": 2.0}, higher_is_better=False)
    assert (lower.worst, lower.best, lower.lagging) == (("th",), ("de",), ("th",))


def test_ties_are_reported_as_ties():
    """Every chrF 0.00 names no best language; two languages at the top share it."""
    from fuxitranyu.evaluate.balance import tied

    flat = balance({"zh": 0.0, "de": 0.0, "fr": 0.0})
    assert flat.worst == flat.best == ("zh", "de", "fr") and flat.range == 0 and flat.cv is None
    assert tied(flat.best, 3) == "all equal"
    top = balance({"de": 0.7, "fr": 0.7, "th": 0.2})
    assert top.best == ("de", "fr") and top.worst == ("th",) and tied(top.best, 3) == "de = fr"
    table = Table("Translation chrF", "chrf", ["zh", "de", "fr"],
                  {"m": {"zh": 0.0, "de": 0.0, "fr": 0.0}, "n": {"zh": 9.0, "de": 9.0, "fr": 3.0}}, True)
    rows = table_csv(table).splitlines()
    assert rows[1].split(",")[5:7] == ["all equal", "all equal"]
    assert rows[2].split(",")[5:7] == ["fr", "zh = de"]


# ----------------------------------------------------------------------------------------------------------------
# The offline suite end to end through lm-eval


def test_offline_data_cut_from_the_parallel_units(tmp_path):
    from fuxitranyu.evaluate.offline import write_offline_data

    units = parallel_units()
    units.append({"id": "long", "texts": {"en": "x" * 300, "de": "y" * 300}})  # over max_bytes: left out
    units.append({"id": "only-de", "texts": {"de": "nur deutsch hier"}})
    config = OfflineTasks(units_per_language=10, translation_units=3, max_bytes=200, min_units=8)
    data = write_offline_data(units, tmp_path / "a", config, seed=5)
    assert data.languages == {"parallel": ("bn", "de", "en", "th", "zh"), "parallel-targets": ("bn", "de", "th", "zh")}
    texts = {u["id"]: u["texts"] for u in units}

    def read(kind, language, folder=data.folder):
        return [json.loads(line) for line in (folder / kind / f"{language}.jsonl").read_text().splitlines()]

    bpb_ids = {lang: [r["id"] for r in read("bpb", lang)] for lang in ("en", "th")}
    assert bpb_ids["en"] == bpb_ids["th"] and len(bpb_ids["en"]) == 10 and "long" not in bpb_ids["en"]
    assert all(r["text"] == texts[r["id"]]["th"] for r in read("bpb", "th"))
    for record in read("translate_mc", "th"):
        assert record["source"] == texts[record["id"]]["en"]
        assert record["choices"][record["gold"]] == texts[record["id"]]["th"]
        assert len(set(record["choices"])) == 4
    assert {record["gold"] for record in read("translate_mc", "th")} != {read("translate_mc", "th")[0]["gold"]}
    assert [r["target"] for r in read("translate_chrf", "de")] == [texts[i]["de"] for i in bpb_ids["en"][:3]]
    again = write_offline_data(units, tmp_path / "b", config, seed=5)
    assert read("translate_mc", "zh", again.folder) == read("translate_mc", "zh")


def test_offline_tasks_run_for_every_language(local_run):
    evaluation, result = local_run
    by_task = {(r.benchmark, r.language, r.metric): r for r in result.rows}
    for language in WORDS:
        assert 0 < by_task[("Bits per byte", language, "bits_per_byte")].value < 16
        assert by_task[("Bits per byte", language, "bits_per_byte")].samples == 10
    for language in set(WORDS) - {"en"}:
        for metric in ("acc", "acc_norm"):
            assert 0 <= by_task[("Translation choice", language, metric)].value <= 1
        assert by_task[("Translation choice", language, "acc")].samples == 10
        assert by_task[("Translation chrF", language, "chrf")].samples == 3
    assert set(result.task_hashes) == {t.spec.task for t in evaluation.tasks.tasks}


def test_bits_per_byte_equals_a_hand_computation(local_run, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    evaluation, result = local_run
    texts = [json.loads(line)["text"] for line in (evaluation.offline.folder / "bpb" / "th.jsonl").open()]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    total_logprob, total_bytes = 0.0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        inputs = torch.tensor([[tokenizer.bos_token_id] + ids[:-1]])  # the first token is predicted from BOS
        with torch.no_grad():
            logprobs = torch.log_softmax(model(inputs).logits[0].double(), dim=-1)
        total_logprob += logprobs[torch.arange(len(ids)), torch.tensor(ids)].sum().item()
        total_bytes += len(text.encode("utf-8"))
    expected = -total_logprob / total_bytes / math.log(2)
    measured = next(r.value for r in result.rows if r.task == "fuxi_bpb_th")
    assert measured == pytest.approx(expected, rel=1e-5)


def test_translation_chrf_is_sacrebleus(local_run):
    import sacrebleu

    _, result = local_run
    for task, items in result.generations.items():
        expected = sacrebleu.corpus_chrf([i["response"] for i in items], [[i["target"] for i in items]]).score
        assert next(r.value for r in result.rows if r.task == task) == pytest.approx(expected), task
        assert items[0]["prompt"].startswith("English: ")


def test_chat_models_are_prompted_through_their_chat_template(local_run, tiny_model, tmp_path):
    evaluation, _ = local_run
    only = [t for t in evaluation.tasks.tasks if t.spec.task == "fuxi_translate_chrf_de"]
    chat = ModelToEvaluate("chat", str(tiny_model), chat=True)
    result = evaluate_model(chat, task_set(only, evaluation.tasks.folder), FAST)
    prompt = result.generations["fuxi_translate_chrf_de"][0]["prompt"]
    assert prompt.startswith("<|im_start|>user\nEnglish: ") and prompt.endswith("<|im_start|>assistant\n")


def test_results_files_tables_and_plots(local_run):
    from fuxitranyu.evaluate.run import write_report

    evaluation, result = local_run
    from rich.console import Console

    write_report(evaluation, [result], Console(quiet=True))
    saved = json.loads((evaluation.out_dir / "results.json").read_text())
    assert saved["suite"] == "local" and saved["lm_eval_version"] == version("lm_eval")
    assert saved["models"]["tiny"]["task_hashes"] == result.task_hashes
    assert len(saved["results"]) == len(result.rows)
    table = (evaluation.out_dir / "tables" / "bits-per-byte.bits_per_byte.csv").read_text().splitlines()
    assert table[0].startswith("model,bn,de,en,th,zh,avg,worst,best,range")
    values = {r.language: r.value for r in result.rows if r.metric == "bits_per_byte"}
    cells = table[1].split(",")
    assert float(cells[6]) == pytest.approx(statistics.fmean(values.values()), abs=1e-3)
    assert cells[7] == max(values, key=values.get)  # lower is better: the worst language has the most bits
    assert (evaluation.out_dir / "plots" / "bits-per-byte.bits_per_byte.png").stat().st_size > 1000


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks that are not on disk; local copies in the original schema


def test_missing_datasets_fail_fast_with_one_message(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    tasks = load_suite("paper-chat").tasks()
    started = time.perf_counter()
    with pytest.raises(FuxiError) as raised:
        prepare_tasks(tasks, tmp_path / "tasks", data_dir=tmp_path / "benchmarks")
    assert time.perf_counter() - started < 20  # seconds, not a network timeout
    message = str(raised.value)
    assert message.startswith(f"{len(tasks)} of {len(tasks)} tasks cannot run offline (12 datasets missing)")
    for dataset in ("alexandrainst/m_arc [ar, bn, de, es, fr, hu, id, it, pt, ru, sk, ta, vi, zh]",
                    "allenai/ai2_arc [ARC-Challenge] (for arc_challenge)", "alexandrainst/m_hellaswag",
                    "Rowan/hellaswag", "alexandrainst/m_mmlu", "cambridgeltl/xcopa [et, ht, id, it, qu, sw",
                    "juletxara/xstory_cloze [ar, es", "Muennighoff/xwinograd [en, fr, jp, pt, ru, zh]",
                    "wmt/wmt16 [de-en, ro-en] (for wmt16-en-ro, wmt16-ro-en, wmt16-en-de, wmt16-de-en)",
                    "wmt/wmt14 [fr-en]", "IWSLT/iwslt2017 [iwslt2017-en-ar] (for iwslt2017-ar-en, iwslt2017-en-ar)",
                    "csebuetnlp/xlsum [arabic, chinese_simplified"):
        assert dataset in message
    assert len(message.splitlines()) == 1 + 12
    assert f"hf download --repo-type dataset cambridgeltl/xcopa --local-dir {tmp_path}/benchmarks/cambridgeltl/xcopa" \
        in message


def test_a_paper_task_runs_from_a_local_copy_in_the_original_schema(tmp_path, tiny_model, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    copy = tmp_path / "benchmarks" / "cambridgeltl" / "xcopa"
    (copy / "id").mkdir(parents=True)
    rows = [{"premise": f"Saya lapar {i}.", "choice1": "Saya makan.", "choice2": "Saya tidur.", "question": "effect",
             "label": i % 2, "idx": i, "changed": False} for i in range(4)]
    for split in ("test", "validation"):
        (copy / "id" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (copy / "README.md").write_text("---\nconfigs:\n- config_name: id\n  data_files:\n  - split: test\n    path: "
                                    "id/test.jsonl\n  - split: validation\n    path: id/validation.jsonl\n---\n")
    xcopa_id = [t for t in load_suite("paper-base").tasks() if t.task == "xcopa_id"]
    ready = prepare_tasks(xcopa_id, tmp_path / "tasks", data_dir=tmp_path / "benchmarks")
    assert ready[0].overrides["dataset_path"] == str(copy)
    result = evaluate_model(ModelToEvaluate("tiny", str(tiny_model)), task_set(ready, tmp_path / "tasks"), FAST)
    assert [(r.task, r.metric, r.samples) for r in result.rows] == [("xcopa_id", "acc", 4)]


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint sweep


def _checkpoint(folder: Path, model: Path, step: int, tag: str) -> None:
    """A pretraining checkpoint: the model's files plus a `tag` file that tells versions apart, all hashed into its
    checkpoint.json as the trainer writes it."""
    import shutil

    from fuxitranyu.io import file_sha256

    path = folder / f"step-{step:06d}"
    if not path.exists():
        shutil.copytree(model, path)
    (path / "tag").write_text(tag)
    files = {p.name: file_sha256(p) for p in sorted(path.iterdir()) if p.is_file() and p.name != "checkpoint.json"}
    (path / "checkpoint.json").write_text(json.dumps({"step": step, "tokens": step * 1000, "files": files}))


def test_sweep_evaluates_each_checkpoint_once_and_draws_curves(tmp_path, tiny_model, monkeypatch):
    from rich.console import Console

    import fuxitranyu.evaluate.sweep as sweep_module

    suite_file = tmp_path / "bpb.yaml"
    suite_file.write_text("benchmarks:\n  - {name: Bits per byte, shots: 0, metrics: [bits_per_byte], "
                          "languages: [de, th], task: 'fuxitranyu/parallel/fuxi_bpb_{language}'}\n")
    evaluation = prepare(load_suite(suite_file), tmp_path / "out", None, parallel_units(), OfflineTasks(), seed=1)
    checkpoints = tmp_path / "run" / "checkpoints"
    for step in (10, 20, 30):
        _checkpoint(checkpoints, tiny_model, step, f"v{step}")
    console = Console(quiet=True)
    calls = []
    real = sweep_module.evaluate_model
    monkeypatch.setattr(sweep_module, "evaluate_model", lambda *a: calls.append(a[0].name) or real(*a))

    first = sweep(checkpoints, evaluation, FAST, "pretrain", tiny_model, every=2, console=console)
    assert [r.step for r in first] == [20, 30] and calls == ["pretrain@20", "pretrain@30"]
    again = sweep(checkpoints, evaluation, FAST, "pretrain", tiny_model, every=2, console=console)
    assert all(r.reused for r in again) and len(calls) == 2
    assert [r.rows for r in again] == [r.rows for r in first]
    _checkpoint(checkpoints, tiny_model, 30, "rewritten")  # a checkpoint rewritten under its old name
    third = sweep(checkpoints, evaluation, FAST, "pretrain", tiny_model, every=2, console=console)
    assert [r.reused for r in third] == [True, False] and calls[-1] == "pretrain@30"
    curves = (tmp_path / "out" / "sweep" / "pretrain" / "curves.csv").read_text().splitlines()
    assert curves[0] == "step,tokens,benchmark,language,metric,value" and len(curves) == 1 + 2 * 2
    assert (tmp_path / "out" / "sweep" / "pretrain" / "curves" / "bits-per-byte.bits_per_byte.png").is_file()


# ----------------------------------------------------------------------------------------------------------------
# The stage in the pipeline


def test_evaluate_stage_reads_models_and_parallel_sets_through_its_inputs(tmp_path, tiny_model):
    import shutil

    from fuxitranyu.pipeline import plan_stages, run_pipeline
    from fuxitranyu.recipe import load_recipe

    run = tmp_path / "run"
    (run / "data" / "parallel").mkdir(parents=True)
    (run / "data" / "parallel" / "set.jsonl").write_text(
        "".join(json.dumps(u, ensure_ascii=False) + "\n" for u in parallel_units()))
    shutil.copytree(tiny_model, run / "pretrain" / "model")
    for stage in ("data", "pretrain"):
        (run / stage / "manifest.json").write_text(json.dumps({"fingerprint": f"fake-{stage}"}))
    recipe = load_recipe("tiny", [f"output_dir={run}", "evaluate.precision=fp32", "evaluate.max_new_tokens=4",
                                  "evaluate.models=[pretrain]", "evaluate.chat_models=[]",
                                  "evaluate.offline.parallel_sets=[]",
                                  "evaluate.offline.units_per_language=8", "evaluate.offline.translation_units=2"])
    evaluate = next(p for p in plan_stages(recipe, only=["evaluate"]) if p.stage.name == "evaluate")
    assert evaluate.inputs == {"data": run / "data", "pretrain": run / "pretrain"}
    manifest = run_pipeline(recipe, only=["evaluate"])[-1]
    assert manifest["stats"]["suite"] == "local" and manifest["stats"]["tasks"] == 5 + 4 + 4
    assert set(manifest["stats"]["models"]) == {"pretrain"}
    assert (run / "evaluate" / "tables.md").read_text().startswith("# local")


def test_evaluate_section_is_validated():
    from fuxitranyu.errors import RecipeError
    from fuxitranyu.recipe import load_recipe

    with pytest.raises(RecipeError, match="chat_models: sft not in evaluate.models"):
        load_recipe("tiny", ["evaluate.chat_models=[sft]"])
    recipe = load_recipe("tiny", ["evaluate.models=[pretrain, ./elsewhere/model]", "evaluate.chat_models=[]",
                                  "evaluate.suite=paper-base"])
    from fuxitranyu.evaluate.stage import evaluate_needs, model_name

    assert evaluate_needs(recipe) == ("pretrain",)
    assert model_name("./elsewhere/model") == "elsewhere"
    assert load_recipe("tiny", ["evaluate=null"]).evaluate is None


def test_cli_evaluates_models_and_sweeps_a_checkpoints_folder(tmp_path, tiny_model, capsys):
    from fuxitranyu.cli import main

    parallel = tmp_path / "parallel.jsonl"
    units = parallel_units()
    units[0]["texts"]["xx"] = "a language nobody supports"
    parallel.write_text("".join(json.dumps(u, ensure_ascii=False) + "\n" for u in units))
    run = tmp_path / "run" / "pretrain"
    _checkpoint(run / "checkpoints", tiny_model, 5, "v5")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", str(tiny_model), str(run / "checkpoints"), "--suite", "local", "--parallel", str(parallel),
              "--out", str(out), "--tokenizer", str(tiny_model), "--set", "evaluate.precision=fp32",
              "--set", "evaluate.offline.units_per_language=8", "--set", "evaluate.offline.translation_units=2",
              "--set", "evaluate.max_new_tokens=4"])
    assert exited.value.code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "skipped languages that are not supported: xx" in captured.err
    assert printed.startswith("# local") and "### Translation choice — acc_norm" in printed
    assert json.loads((out / "results.json").read_text())["models"].keys() == {tiny_model.name}
    assert (out / "sweep" / "pretrain" / "step-000005.json").is_file()
    assert (out / "generations" / tiny_model.name / "fuxi_translate_chrf_th.jsonl").is_file()
