import json
from pathlib import Path

import pytest

from fuxitranyu.errors import RecipeError
from fuxitranyu.recipe import embedded_recipes, field_docs, load_recipe

RECIPE_DIR = Path(__file__).parents[1] / "recipes"


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
def test_every_shipped_recipe_parses(name, tmp_path, monkeypatch):
    """Every recipe loads and builds its model (on the meta device); one that continues a model finds the
    config.json it names (Llama 3.1 8B's, written here) where it expects it."""
    import yaml

    from fuxitranyu.model.summary import recipe_model

    path = RECIPE_DIR / f"{name}.yaml"
    init_from = yaml.safe_load(path.read_text())["model"].get("init_from")
    if init_from:
        from test_adapt import LLAMA_3_1_8B

        monkeypatch.chdir(tmp_path)
        Path(init_from).mkdir(parents=True)
        (Path(init_from) / "config.json").write_text(json.dumps(LLAMA_3_1_8B))
    recipe = load_recipe(path)
    assert recipe.name == name
    assert recipe_model(recipe).config.model_type == ("llama" if init_from else "fuxitranyu")
    assert name in embedded_recipes()


def test_8b_recipe_carries_the_papers_numbers():
    r = load_recipe("fuxitranyu-8b")
    config = r.build_model_config()
    assert (config.hidden_size, config.intermediate_size, config.num_attention_heads,
            config.num_hidden_layers, config.vocab_size, config.max_position_embeddings) == (
        4096, 16384, 32, 30, 250_752, 4096)
    assert r.tokenizer.vocab_size == 250_680 and r.tokenizer.pad_to_multiple_of == 128
    assert r.tokenizer.max_documents_per_language == 1_000_000 and r.tokenizer.split_digits is False
    p = r.pretrain
    assert r.mix.context_length == 4096 and p.total_tokens == 606 * 10**9
    assert p.max_lr == 3e-4 and [(c.at_tokens, c.max_lr) for c in p.lr_changes] == [(241 * 10**9, 1e-4)]
    assert p.min_lr_ratio == 0.1 and p.adam_betas == (0.9, 0.95) and p.adam_eps == 1e-8
    assert [s.batch_tokens for s in p.batch] == [2 * 2**20, 4 * 2**20]
    assert p.precision == "fp16" and p.attention == "flash_attention_2" and p.reshard_after_forward is False


def test_overrides_apply_with_yaml_types():
    r = load_recipe("tiny", ["pretrain.max_lr=1e-4", "seed=7", "pretrain.total_tokens=3M",
                             "model.overrides.num_hidden_layers=2", "pretrain.batch.0.batch_tokens=512"])
    assert r.pretrain.max_lr == 1e-4 and r.seed == 7 and r.pretrain.total_tokens == 3_000_000
    assert r.model.to_config().num_hidden_layers == 2 and r.pretrain.batch[0].batch_tokens == 512


@pytest.mark.parametrize("overrides, expected", [
    (["pretrain.max_lrr=1"],
     "unknown key 'pretrain.max_lrr' (from --set pretrain.max_lrr=1); did you mean pretrain.max_lr?"),
    (["pretrain.max_lr=fast"],
     "key 'pretrain.max_lr' (from --set pretrain.max_lr=fast): Input should be a valid number"),
    (["pretrain.min_lr_ratio=2"],
     "key 'pretrain.min_lr_ratio' (from --set pretrain.min_lr_ratio=2): Input should be less than or equal to 1"),
    (["model.preset=huge"], "unknown preset 'huge'; presets: fuxitranyu-1b, fuxitranyu-8b, small, tiny"),
    (["model.overrides.hidden_sz=3"], "overrides.hidden_sz is not a FuxiTranyuConfig field; did you mean hidden_size?"),
    (["model.overrides.num_attention_heads=5"], "hidden_size (128) must be a multiple of num_attention_heads (5)"),
    (["tokenizer.vocab_size=12.5"],
     "key 'tokenizer.vocab_size' (from --set tokenizer.vocab_size=12.5): expected a whole number"),
    (["pretrain.total_tokens=lots"], "expected a count such as 4096, 2Mi, 606B or 1.5e9, got 'lots'"),
    (["pretrain.batch.0.batch_tokens=1000"], "batch_tokens 1000 is not a multiple of mix.context_length 256"),
    (["pretrain.batch.3.batch_tokens=1024"], "pretrain.batch has no item 3"),
    (["pretrain.adam_betas=[0.9, 1.5]"], "each beta must be in [0, 1), got [0.9, 1.5]"),
    (["pretrain"], "must look like section.key=value"),
    (["seed.x=1"], "seed is a value, not a section"),
    (["pretrain.max_lr=[1"], "value is not valid YAML"),
])
def test_bad_overrides_name_the_key(overrides, expected):
    with pytest.raises(RecipeError) as info:
        load_recipe("tiny", overrides)
    assert expected in str(info.value)


def test_bad_recipe_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmix:\n  context_length: -5\npretrain:\n  warmup_tokens: 10M\nmodell: {}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    message = str(info.value)
    assert f"{bad}: unknown key 'modell'; did you mean model?" in message
    assert f"{bad}: key 'mix.context_length': Input should be greater than 0" in message
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="broken.yaml:2:1: not valid YAML"):
        load_recipe(not_yaml)
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="must be a mapping of sections, got list"):
        load_recipe(a_list)
    with pytest.raises(RecipeError, match="key 'name': Field required"):
        load_recipe(_write(tmp_path, "seed: 3\n"))
    with pytest.raises(RecipeError, match="no recipe file 'nope.yaml'"):
        load_recipe("nope.yaml")


def _write(tmp_path, text):
    path = tmp_path / "noname.yaml"
    path.write_text(text)
    return path


def test_every_field_is_documented():
    rows = field_docs()
    undocumented = [key for key, _, _, doc in rows if not doc]
    assert not undocumented
    assert ("pretrain.max_lr" in {key for key, *_ in rows})


def test_the_command_line_names_every_embedded_recipe():
    from typer.testing import CliRunner

    from fuxitranyu.cli import app

    shown = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0
    assert all(name in shown.output for name in embedded_recipes()), shown.output
