"""The layout's promises: no import cycle among the package's modules, and stages that only read declared inputs."""

import ast
from pathlib import Path

import fuxitranyu

PACKAGE = Path(fuxitranyu.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """fuxitranyu modules that `path` imports anywhere (function bodies included; `if TYPE_CHECKING:` excluded, since
    those never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if _type_checking_block(block) for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        # importing a.b.c runs the __init__ of a and a.b, which are not edges of interest: a package's __init__
        # importing its own submodules is how packages work.
        graph[name] = {m for m in imported_modules(path, known) if m != name and not name.startswith(m + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_modules():
    graph = import_graph()
    assert len(graph) > 30 and "fuxitranyu.pipeline" in graph["fuxitranyu.cli"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["fuxitranyu.stage"] = graph["fuxitranyu.stage"] | {"fuxitranyu.pipeline"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and "fuxitranyu.pipeline" in cycle


def test_stage_packages_never_import_the_pipeline():
    """Only the command line (`fuxitranyu.cli`) and the experiments, which are made of whole runs and sit above the
    pipeline, run the pipeline."""
    graph = import_graph()
    offenders = [name for name, targets in graph.items()
                 if "fuxitranyu.pipeline" in targets
                 and not name.startswith(("fuxitranyu.cli", "fuxitranyu.experiment."))]
    assert offenders == []


def artifact_names() -> dict[str, set[str]]:
    """The file and folder names each stage package declares in its `artifacts.py`, and the training stages' shared
    ones in `fuxitranyu.stage` (owner "stage")."""
    owners = {}
    for path in [*PACKAGE.glob("*/artifacts.py"), PACKAGE / "stage.py"]:
        owner = path.parent.name if path.name == "artifacts.py" else "stage"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owners[owner] = {node.value.value for node in tree.body
                         if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                         and isinstance(node.value.value, str) and node.targets[0].id.isupper()}
    return owners


def spelled_path_parts(tree: ast.AST) -> set[str]:
    """String constants joined onto a path (`folder / "name"`, `folder / "name/sub"`) in a module."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and isinstance(node.right.value, str):
            found.add(node.right.value.split("/")[0])
    return found


def test_no_module_spells_another_stages_file_names():
    """Each stage owns its folder's names (`<stage>/artifacts.py`); everyone else joins paths with those constants,
    so renaming a file is one edit, and a reader that spells the name by hand is caught here."""
    owners = artifact_names()
    stages = {"data", "mix", "tokenizer", "pretrain", "posttrain", "evaluate", "analyze", "report", "stage"}
    assert stages <= set(owners)
    assert "parallel" in owners["data"] and "index.json" in owners["mix"] and "checkpoints" in owners["stage"]
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        package = path.relative_to(PACKAGE).parts[0] if len(path.relative_to(PACKAGE).parts) > 1 else None
        own = owners.get(package, set())
        for name in spelled_path_parts(ast.parse(path.read_text(encoding="utf-8"))):
            others = [owner for owner, names in owners.items() if name in names and owner != package]
            if others and name not in own:
                offenders.append(f"{path.relative_to(PACKAGE)}: {name!r} (named in {', '.join(others)})")
    assert offenders == []


def test_the_spelled_name_check_finds_a_planted_one():
    tree = ast.parse('clean = data_dir / "parallel" / "set.jsonl"')
    assert "parallel" in spelled_path_parts(tree) and "parallel" in artifact_names()["data"]


def test_stages_do_not_build_paths_to_other_stages():
    """A stage reads others only through ctx.inputs; `run_dir / "<stage>"` inside a stage package is a hidden input."""
    from fuxitranyu.pipeline import STAGES

    names = {stage.name for stage in STAGES}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("pipeline.py", "cli.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant)
                    and node.right.value in names and "run_dir" in ast.unparse(node.left)):
                offenders.append(f"{path.name}: {ast.unparse(node)}")
    assert offenders == []


def test_no_function_is_longer_than_60_lines():
    """A function that does not fit on a screen does more than one thing (the house rule, checked)."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
