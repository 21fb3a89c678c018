"""The data stage's scale-out path: on a local Ray instance it writes the same clean documents and the same account
as the local executor, and a bad record stops it with the same clear error."""

import gzip
import json
from pathlib import Path

import pytest
from data_helpers import write_jsonl

from fuxitranyu import pipeline
from fuxitranyu.errors import FuxiError
from fuxitranyu.recipe import load_recipe

TEXTS = [
    "Le chat est assis sur la table et il regarde le jardin avec une grande attention tous les jours.",
    "The cat is sitting on the table and it looks at the garden with great attention every day of the week.",
    "Der Hund schläft im Garten, während die Kinder nach der Schule auf der Straße Fußball spielen.",
]


def corpus(folder: Path, bad: bool = False) -> Path:
    folder.mkdir(parents=True)
    for part in range(3):
        records = [{"text": f"{TEXTS[i % 3]} Ligne {i} du fichier {part}, numéro {i * 7 + part}.", "id": f"{part}-{i}"}
                   for i in range(40)]
        write_jsonl(folder / f"part-{part}.jsonl", records)
    if bad:
        (folder / "part-1.jsonl").write_text((folder / "part-1.jsonl").read_text() + '{"text": "cut\n')
    return folder


def run(tmp_path: Path, name: str, source: Path, executor: str):
    settings = {"sources": [{"type": "jsonl", "paths": [str(source)]}], "tasks": 3, "workers": 2,
                "executor": executor}
    recipe = load_recipe("tiny", [f"output_dir={tmp_path / name}", f"data={json.dumps(settings)}"])
    return pipeline.run_pipeline(recipe, only=["data"])[0]


def clean_documents(manifest_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(manifest_dir)): gzip.open(p).read() for p in sorted(manifest_dir.glob("clean/*/*.gz"))}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_gives_the_local_executors_output_and_errors(tmp_path, local_ray):
    source = corpus(tmp_path / "corpus")
    local = run(tmp_path, "local", source, "local")
    on_ray = run(tmp_path, "ray", source, "ray")
    documents = clean_documents(tmp_path / "local" / "data")
    assert documents and documents == clean_documents(tmp_path / "ray" / "data")  # byte for byte
    for key in ("steps", "final", "dedup"):
        assert on_ray["stats"][key] == local["stats"][key], key
    assert on_ray["fingerprint"] == local["fingerprint"]  # the executor is not part of what the stage computes

    bad = corpus(tmp_path / "bad", bad=True)
    errors = []
    for executor in ("local", "ray"):
        with pytest.raises(FuxiError) as info:
            run(tmp_path, f"bad-{executor}", bad, executor)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and f"{bad / 'part-1.jsonl'}:41: malformed JSON" in errors[0]
