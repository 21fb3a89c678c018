import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from fuxitranyu.errors import FuxiError
from fuxitranyu.mix.build import pack, sample_documents
from fuxitranyu.mix.config import MixSection
from fuxitranyu.mix.plan import plan_mix
from fuxitranyu.mix.reader import ShardReader

EOS = 0


# ------------------------------------------------------------------------------------------------------------ plans


def rows(plan):
    return {row.language: (row.tokens, round(row.epochs, 4), row.capped) for row in plan.languages}


def test_proportional_plan():
    plan = plan_mix({"en": 600, "fr": 300, "lo": 100}, MixSection(strategy="proportional"), 2000)
    assert rows(plan) == {"en": (1200, 2.0, False), "fr": (600, 2.0, False), "lo": (200, 2.0, False)}
    assert plan.warnings == ()


def test_temperature_plan_hand_computed():
    # shares 0.64 and 0.36; with alpha 0.5 the weights are 0.8 and 0.6 -> 4/7 and 3/7 of 700 tokens.
    plan = plan_mix({"en": 640, "fr": 360}, MixSection(strategy="temperature", alpha=0.5), 700)
    assert rows(plan) == {"en": (400, 0.625, False), "fr": (300, 0.8333, False)}


def test_unimax_caps_a_small_language_and_redistributes():
    # equal share would be 1200/3 = 400, but lo has 10 tokens and at most 4 epochs -> 40; the other 1160 split.
    plan = plan_mix({"en": 1000, "fr": 500, "lo": 10}, MixSection(strategy="unimax", max_epochs=4), 1200)
    assert rows(plan) == {"en": (580, 0.58, False), "fr": (580, 1.16, False), "lo": (40, 4.0, True)}
    assert sum(row.tokens for row in plan.languages) == 1200


def test_unimax_budget_beyond_the_cap_is_an_error():
    with pytest.raises(FuxiError, match="the most this data allows is 6,040"):
        plan_mix({"en": 1000, "fr": 500, "lo": 10}, MixSection(strategy="unimax", max_epochs=4), 7000)


def test_manual_ratios():
    recipe = MixSection(strategy="manual", ratios={"en": 0.5, "fr": 0.25, "lo": 0.25})
    plan = plan_mix({"en": 1000, "fr": 500, "lo": 10}, recipe, 1000)
    assert rows(plan)["lo"] == (250, 25.0, False)
    assert plan.warnings == ("lo: 25.0 epochs over its 10 tokens (more than mix.max_epochs=4)",)
    with pytest.raises(FuxiError, match="ratios give a share to th, but the data has no tokens of it"):
        plan_mix({"en": 1000, "fr": 500}, MixSection(strategy="manual", ratios={"en": 0.5, "fr": 0.25, "th": 0.25}),
                 1000)
    with pytest.raises(FuxiError, match="the data has lo, which ratios do not mention"):
        plan_mix({"en": 1000, "fr": 500, "lo": 10}, MixSection(strategy="manual", ratios={"en": 0.5, "fr": 0.5}), 100)


def test_replay_takes_its_share_and_the_targets_the_rest_by_their_strategy():
    """Targets th and lo by UniMax on 70% of 1000 tokens (lo capped at 4 epochs of 50: 200, th the other 500); en and
    fr replayed proportionally on 30% (2:1 -> 200 and 100)."""
    recipe = MixSection(strategy="unimax", max_epochs=4, languages=["th", "lo"],
                        replay={"languages": ["en", "fr"], "share": 0.3})
    plan = plan_mix({"en": 6000, "fr": 3000, "th": 900, "lo": 50, "de": 800}, recipe, 1000)
    assert {row.language: (row.tokens, row.role, row.capped) for row in plan.languages} == {
        "th": (500, "target", False), "lo": (200, "target", True), "en": (200, "replay", False),
        "fr": (100, "replay", False)}
    assert sum(row.share for row in plan.languages) == pytest.approx(1.0)
    assert plan.strategy == "unimax on the targets + 30% replay (proportional)"
    with pytest.raises(ValueError, match="mix.replay needs mix.languages"):
        MixSection(replay={"languages": ["en"], "share": 0.2})
    with pytest.raises(ValueError, match="share en: a language is either a target or replayed"):
        MixSection(languages=["th", "en"], replay={"languages": ["en"], "share": 0.2})
    with pytest.raises(ValueError, match="less than 1"):
        MixSection(languages=["th"], replay={"languages": ["en"], "share": 1.0})


def test_bad_mix_recipes_name_the_problem():
    from fuxitranyu.errors import RecipeError
    from fuxitranyu.recipe import load_recipe

    with pytest.raises(RecipeError, match="ratios must sum to 1 \\(they sum to 0.9\\)"):
        load_recipe("tiny", ["mix.strategy=manual", "mix.ratios={en: 0.6, fr: 0.3}"])
    with pytest.raises(RecipeError, match="write 'zh_CN' as its label 'zh'"):
        load_recipe("tiny", ["mix.strategy=manual", "mix.ratios={zh_CN: 1.0}"])
    with pytest.raises(FuxiError, match="languages th are in mix.languages but the data has no tokens"):
        plan_mix({"en": 10}, MixSection(languages=["en", "th"]), 10)


# ----------------------------------------------------------------------------------------------------- build, read


def write_store(folder, language, documents, dtype=np.uint16):
    folder.mkdir(parents=True, exist_ok=True)
    np.concatenate(documents).astype(dtype).tofile(folder / f"{language}.bin")
    np.concatenate([[0], np.cumsum([len(d) for d in documents])]).astype(np.int64).tofile(folder / f"{language}.idx")


def make_stores(tmp_path):
    rng = np.random.default_rng(0)
    docs = {
        "en": [rng.integers(10, 1000, rng.integers(5, 60)) for _ in range(40)],
        "fr": [rng.integers(1000, 2000, rng.integers(5, 60)) for _ in range(25)],
        "lo": [rng.integers(2000, 3000, rng.integers(5, 20)) for _ in range(3)],
    }
    for language, documents in docs.items():
        write_store(tmp_path / "tokens", language, documents)
    available = {lang: sum(len(d) + 1 for d in documents) for lang, documents in docs.items()}
    return docs, available


def build(tmp_path, name="mix", budget=3000, context=15, per_shard=7, seed=3):
    docs, available = make_stores(tmp_path)
    plan = plan_mix(available, MixSection(strategy="unimax", max_epochs=3), budget)
    index = pack(plan, tmp_path / "tokens", tmp_path / name, context, EOS, 3000, per_shard, seed)
    return docs, plan, index


def test_sample_documents_whole_epochs_then_part():
    rng = np.random.default_rng(0)
    lengths = np.array([4, 9, 2, 5])  # sizes with EOS: 5, 10, 3, 6 = 24 per epoch
    picked = sample_documents(lengths, 24 * 2 + 7, rng)
    counts = Counter(picked.tolist())
    assert all(counts[i] >= 2 for i in range(4)) and len(picked) >= 9
    assert 24 * 2 + 7 <= sum(lengths[picked] + 1) < 24 * 2 + 7 + 10
    assert sorted(picked[:4].tolist()) == [0, 1, 2, 3] and sorted(picked[4:8].tolist()) == [0, 1, 2, 3]


def test_build_is_deterministic(tmp_path):
    _, _, first = build(tmp_path, "a")
    _, _, second = build(tmp_path, "b")
    assert [s["sha256"] for s in first["shards"]] == [s["sha256"] for s in second["shards"]]
    assert len(first["shards"]) > 2  # several shards, so shard boundaries are exercised
    _, _, other_seed = build(tmp_path, "c", seed=4)
    assert [s["sha256"] for s in other_seed["shards"]] != [s["sha256"] for s in first["shards"]]


def test_every_sampled_token_lands_in_the_shards(tmp_path):
    docs, plan, index = build(tmp_path)
    reader = ShardReader(tmp_path / "mix")
    stream = np.concatenate([reader._sequence(i) for i in range(reader.total)]).astype(np.int64)
    assert index["tail_tokens_dropped"] < index["sequence_length"]
    assert len(stream) + index["tail_tokens_dropped"] == sum(index["sampled_tokens"].values())
    # Split the stream at EOS: every piece is a whole document, in a count that matches the planned epochs.
    pieces = np.split(stream, np.flatnonzero(stream == EOS) + 1)[:-1]
    known = {tuple(d.tolist()): lang for lang, documents in docs.items() for d in documents}
    seen = Counter(known[tuple(p[:-1].tolist())] for p in pieces)
    assert set(seen) == {"en", "fr", "lo"}
    for row in plan.languages:  # sampled within one document of the plan
        assert abs(index["sampled_tokens"][row.language] - row.tokens) <= 61
    # Language labels of every token agree with the documents they came from.
    labels = np.concatenate([reader._languages(i) for i in range(reader.total)])
    start = 0
    for piece in pieces:
        language = reader.languages.index(known[tuple(piece[:-1].tolist())])
        assert (labels[start:start + len(piece)] == language).all()
        start += len(piece)


def documents_in(stream: np.ndarray, known: dict) -> list:
    """The whole documents of an EOS-separated token stream, as keys of `known` (a cut last one is left out)."""
    pieces = np.split(stream, np.flatnonzero(stream == EOS) + 1)[:-1]
    return [known[tuple(piece[:-1].tolist())] for piece in pieces if tuple(piece[:-1].tolist()) in known]


def test_validation_documents_never_reach_the_shards_and_with_them_account_for_every_document(tmp_path):
    docs, available = make_stores(tmp_path)
    plan = plan_mix(available, MixSection(strategy="unimax", max_epochs=3), 6000)  # >= 1 epoch of every language
    index = pack(plan, tmp_path / "tokens", tmp_path / "mix", 15, EOS, 3000, 7, 3, validation_documents=4)
    known = {tuple(d.tolist()): (lang, i) for lang, documents in docs.items() for i, d in enumerate(documents)}
    reader = ShardReader(tmp_path / "mix")
    trained = set(documents_in(np.concatenate([reader._sequence(i) for i in range(reader.total)]), known))
    for language, documents in docs.items():
        entry = index["validation"].get(language)
        held_out = set()
        if entry is not None:
            held_out = set(documents_in(np.load(tmp_path / "mix" / entry["file"]).ravel(), known))
            assert entry["documents"] == min(4, len(documents) // 10)  # at most a tenth of a language
            assert len(held_out) >= entry["documents"] - 1 >= 1  # all but a document cut at the end
        assert not held_out & trained, language
        mine = {key for key in trained if key[0] == language}
        assert len(mine) + (entry["documents"] if entry else 0) == len(documents), language
    assert set(index["validation"]) == {"en", "fr"}  # lo has 3 documents: fewer than 10 keep all for training


def test_two_ranks_read_disjoint_data_that_covers_the_whole(tmp_path):
    build(tmp_path)
    readers = [ShardReader(tmp_path / "mix", rank, 2, seed=5) for rank in range(2)]
    total = readers[0].total
    seen = [[], []]
    for _ in range(total // 4):
        for rank, reader in enumerate(readers):
            seen[rank].extend(reader.next_batch(4).indices.tolist())
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0] + seen[1]) == total // 4 * 4 and len(set(seen[0] + seen[1])) == total // 4 * 4


def test_resume_mid_epoch_gives_the_same_batches(tmp_path):
    build(tmp_path)
    reference = ShardReader(tmp_path / "mix", seed=1)
    expected = [reference.next_batch(3) for _ in range(6)]
    reader = ShardReader(tmp_path / "mix", seed=1)
    for _ in range(2):
        reader.next_batch(3)
    state = json.loads(json.dumps(reader.state_dict()))
    resumed = ShardReader(tmp_path / "mix", seed=1)
    resumed.load_state_dict(state)
    for batch in expected[2:]:
        got = resumed.next_batch(3)
        assert np.array_equal(got.tokens, batch.tokens) and np.array_equal(got.languages, batch.languages)
    with pytest.raises(FuxiError, match="drawn with seed 1, this run uses 2"):
        ShardReader(tmp_path / "mix", seed=2).load_state_dict(state)


def test_every_epoch_is_a_permutation_and_batch_size_changes_neither_skip_nor_repeat(tmp_path):
    build(tmp_path)
    reader = ShardReader(tmp_path / "mix", 0, 1, seed=9)
    total, indices, sizes = reader.total, [], [2, 2, 4, 4, 6]
    while len(indices) < 2 * total + 5:  # across two epoch boundaries, with the paper's kind of batch ramp
        indices.extend(reader.next_batch(sizes[min(len(indices) // 20, 4)]).indices.tolist())
    first, second = indices[:total], indices[total:2 * total]
    assert sorted(first) == sorted(second) == list(range(total))
    assert first != second and first != list(range(total))  # shuffled, and differently each epoch
    assert reader.epoch == len(indices) // total
    with pytest.raises(FuxiError, match="does not split over 2 ranks"):
        ShardReader(tmp_path / "mix", 0, 2).next_batch(3)


def test_batches_hold_as_many_languages_as_random_draws(tmp_path):
    """Long documents fill several consecutive sequences; walking the shards in order would give batches of one or
    two languages. The reader's batches must hold about as many languages as sequences drawn at random."""
    rng = np.random.default_rng(0)
    languages = [f"l{i}" for i in range(12)]
    for i, language in enumerate(languages):  # documents of ~10 sequences each
        write_store(tmp_path / "tokens", language, [rng.integers(100 * i + 1, 100 * i + 99, 150) for _ in range(6)])
    available = {language: 6 * 151 for language in languages}
    plan = plan_mix(available, MixSection(strategy="proportional"), sum(available.values()))
    pack(plan, tmp_path / "tokens", tmp_path / "mix", 15, EOS, 3000, 64, 0)
    reader = ShardReader(tmp_path / "mix", seed=0)

    def languages_in(rows):
        return len({int(x) for row in rows for x in np.unique(row)})

    batch = 8
    ours = [languages_in(reader.next_batch(batch).languages) for _ in range(reader.total // batch)]
    in_order = [languages_in([reader._languages(i) for i in range(b, b + batch)])
                for b in range(0, reader.total - batch, batch)]
    random = [languages_in([reader._languages(i) for i in rng.choice(reader.total, batch, replace=False)])
              for _ in range(200)]
    assert np.mean(ours) > 0.9 * np.mean(random) and np.mean(in_order) < 0.5 * np.mean(random)


def test_uint32_when_the_vocabulary_needs_it(tmp_path):
    write_store(tmp_path / "tokens", "en", [np.array([1, 2, 3])], np.uint32)
    plan = plan_mix({"en": 4}, MixSection(strategy="proportional"), 4)
    index = pack(plan, tmp_path / "tokens", tmp_path / "mix", 1, EOS, 70_000, 10, 0)
    assert index["dtype"] == "uint32"
    shard = np.load(tmp_path / "mix" / index["shards"][0]["file"])
    assert shard.dtype == np.uint32 and shard.shape == (2, 2)
    assert index["shards"][0]["sha256"] == hashlib.sha256(shard.tobytes()).hexdigest()


def test_corrupt_index_is_a_clear_error(tmp_path):
    build(tmp_path)
    (tmp_path / "mix" / "index.json").write_text('{"context_length": 15, "sha')
    with pytest.raises(FuxiError, match="index.json: index.json is not valid JSON"):
        ShardReader(tmp_path / "mix")
