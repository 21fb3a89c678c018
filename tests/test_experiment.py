"""The balance experiment: arms that share data and tokenizer, differ only in strategy and seed, and a comparison
read from their artifacts that tells a difference from the seeds' noise."""

import json
import math
from html import unescape

import pytest
from rich.console import Console

from fuxitranyu.errors import FuxiError
from fuxitranyu.experiment.balance import ArmResult, arm_recipes, run_balance, summarize
from fuxitranyu.pipeline import fingerprint, stage_named


def _result(strategy, seed, bpb, shares=None):
    return ArmResult(strategy, seed, shares or {"en": 0.5, "fr": 0.5}, bits_per_byte=bpb, chrf={}, validation_loss={})


def test_a_difference_is_called_real_only_beyond_twice_the_seeds_spread():
    results = [_result("proportional", 1, {"en": 3.0, "fr": 5.0}), _result("proportional", 2, {"en": 3.2, "fr": 5.2}),
               _result("unimax", 1, {"en": 3.1, "fr": 4.1}), _result("unimax", 2, {"en": 3.1, "fr": 4.3})]
    summary = summarize(results)
    mean = summary["metrics"]["bits per byte, mean over languages (lower is better)"]
    assert mean["proportional"] == pytest.approx((4.1, math.sqrt(0.02)))
    assert mean["unimax"] == pytest.approx((3.65, math.sqrt(0.005)))
    spread = summary["metrics"]["bits per byte, σ across languages (lower: more balanced)"]
    assert spread["proportional"][0] == pytest.approx(1.0) and spread["unimax"][0] == pytest.approx(0.55)
    [comparison] = summary["comparisons"]
    assert comparison["difference"] == pytest.approx(0.45) and comparison["noise"] == pytest.approx(2 * math.sqrt(0.02))
    assert comparison["verdict"] == "unimax is better beyond the seeds' noise"
    noisy = [_result("proportional", 1, {"en": 3.0, "fr": 5.0}), _result("proportional", 2, {"en": 4.0, "fr": 5.0}),
             _result("unimax", 1, {"en": 3.1, "fr": 4.4}), _result("unimax", 2, {"en": 3.1, "fr": 4.4})]
    assert summarize(noisy)["comparisons"][0]["verdict"] == "within the seeds' noise"
    single = [_result("proportional", 1, {"en": 3.0}), _result("unimax", 1, {"en": 2.0})]
    assert summarize(single)["comparisons"][0]["verdict"] == "one seed each: no noise estimate"


def test_arms_change_only_strategy_seed_and_directory(tmp_path):
    arms = arm_recipes("tiny", [], ["proportional", "unimax"], 2, tmp_path)
    assert [(a.strategy, a.seed) for a in arms] == [("proportional", 1234), ("proportional", 1235),
                                                    ("unimax", 1234), ("unimax", 1235)]
    assert arms[0].recipe.run_dir == tmp_path / "proportional" / "seed-1234"
    assert arms[0].recipe.sft is None and arms[0].recipe.evaluate.models == ["pretrain"]
    assert arms[0].recipe.pretrain == arms[3].recipe.pretrain and arms[0].recipe.model == arms[3].recipe.model
    data = stage_named("data")  # the shared stage's fingerprint would be the same in every arm of one seed
    assert fingerprint(data, arms[0].recipe, {}) == fingerprint(data, arms[2].recipe, {})
    with pytest.raises(FuxiError, match="two or more different strategies"):
        arm_recipes("tiny", [], ["unimax"], 2, tmp_path)
    with pytest.raises(FuxiError, match="two or more different strategies"):
        arm_recipes("tiny", [], ["unimax", "sorted"], 2, tmp_path)
    with pytest.raises(FuxiError, match="no evaluate section"):
        arm_recipes("tiny", ["evaluate=null"], ["unimax", "proportional"], 1, tmp_path)


def test_the_experiment_runs_arms_on_shared_stages_and_compares_them(smoke_run, tmp_path):
    recipe, manifests = smoke_run
    overrides = [f"output_dir={recipe.run_dir}", "analyze.max_sentences=6", "analyze.figures=false",
                 "pretrain.checkpoints=[]", "pretrain.total_tokens=40960"]  # 20 steps: enough to tell seeds apart
    output = tmp_path / "balance"
    page = run_balance("smoke", overrides, ["proportional", "unimax"], 2, output, Console(quiet=True))
    for strategy in ("proportional", "unimax"):
        for seed in (1234, 1235):
            run = output / strategy / f"seed-{seed}"
            assert (run / "data").resolve() == (recipe.run_dir / "data").resolve()
            assert json.loads((run / "mix" / "plan.json").read_text())["strategy"] == strategy
            assert (run / "report" / "report.html").is_file()
    assert json.loads((recipe.run_dir / "data" / "manifest.json").read_text())["fingerprint"] == \
        manifests["data"]["fingerprint"]  # the shared stage ran once, in the smoke run
    result = json.loads((output / "balance.json").read_text())
    arms = result["arms"]
    assert len(arms) == 4 and all(len(arm["bits_per_byte"]) == 10 for arm in arms)
    proportional = [a for a in arms if a["strategy"] == "proportional"]
    unimax = [a for a in arms if a["strategy"] == "unimax"]
    # the mixes differ as their strategies say: unimax's shares are flatter than the data's
    assert max(proportional[0]["shares"].values()) > max(unimax[0]["shares"].values())
    # seeds differ (init and order), so the same strategy's two seeds do not measure the same numbers
    assert proportional[0]["bits_per_byte"] != proportional[1]["bits_per_byte"]
    assert all(arm["similarity_by_layer"] and arm["importance_by_language"] for arm in arms)
    mean_bpb = result["summary"]["metrics"]["bits per byte, mean over languages (lower is better)"]
    for strategy, runs in (("proportional", proportional), ("unimax", unimax)):
        values = [sum(a["bits_per_byte"].values()) / len(a["bits_per_byte"]) for a in runs]
        assert mean_bpb[strategy][0] == pytest.approx(sum(values) / 2)
    html = unescape(page.read_text())
    assert "Does balance help?" in html and ("within the seeds' noise" in html or "beyond the seeds' noise" in html)
    assert (output / "balance.md").is_file() and html.count("<img") >= 3
