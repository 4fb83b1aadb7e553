"""The house can be read from its folders, and this test keeps it so:
- imports go one way: floor ← twins and convert ← parity (and the test checkpoints) ←
  application ← the repository's tools (training/, benchmarks/), never back;
- the floor imports neither torch, MLX nor transformers; the twins never import each other;
- a backend is chosen in one place: apart from the parity harness, which runs both by
  design, only app/backends.py imports both twins;
- nothing but the command line imports the command line;
- one import package: every module is imported as funasr_qwen4b.<room>, never by a bare
  folder name, and no import circle exists anywhere.
Every import is seen, including those inside functions. Each rule is also run on a planted
violation (the tests at the end), so a rule that cannot fail is caught too."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each folder of the repository with Python in it, and the module name its files import as.
ROOMS = {"funasr_qwen4b": "funasr_qwen4b", "reference": "funasr_qwen4b.reference",
         "mlx_port": "funasr_qwen4b.mlx_port", "convert": "funasr_qwen4b.convert",
         "parity": "funasr_qwen4b.parity", "training": "training", "benchmarks": "benchmarks"}
FLOOR, TWINS, PARITY, APP, TOOLS = range(5)
TWIN_NAMES = ("funasr_qwen4b.reference", "funasr_qwen4b.mlx_port")
HEAVY = {"torch", "mlx", "mlx_lm", "funasr", "transformers"}
BARE = {"reference", "mlx_port", "convert", "parity"}  # folder names that are not packages of their own


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    parts = ROOMS[parts[0]].split(".") + parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for folder in ROOMS if (root / folder).is_dir()
            for p in (root / folder).rglob("*.py")}


def imports(name: str, path: Path) -> list[tuple[tuple[str, ...], int]]:
    """Every import in `path` with its line, as candidate module names, most specific
    first (`from pkg import x` imports pkg.x when that is a module, else pkg)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [((a.name,), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                stem = node.module
            out += [((f"{stem}.{a.name}", stem), node.lineno) for a in node.names]
    return out


def within(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


def checkpoint_builder(name: str) -> bool:
    """The random original-format checkpoints: `funasr_qwen4b.testing` and one module per model kind."""
    return within(name, "funasr_qwen4b.testing") or name.startswith("funasr_qwen4b.testing_")


def layer(name: str) -> int | None:
    if within(name, "training") or within(name, "benchmarks"):
        return TOOLS
    if within(name, "funasr_qwen4b.app"):
        return APP
    if within(name, "funasr_qwen4b.parity") or checkpoint_builder(name):
        return PARITY
    if any(within(name, f"funasr_qwen4b.{t}") for t in ("reference", "mlx_port", "convert")):
        return TWINS
    if within(name, "funasr_qwen4b"):
        return FLOOR
    return None  # outside the project


def edges(mods: dict[str, Path]) -> dict[str, set[tuple[str, int]]]:
    """Each module's imports of the project's own modules, with their lines."""
    out = {}
    for name, path in mods.items():
        targets = set()
        for candidates, line in imports(name, path):
            target = next((c for c in candidates if c in mods), None)
            if target is not None and target != name:
                targets.add((target, line))
        out[name] = targets
    return out


# --- the rules: each returns the problems it finds in a tree ---------------------------

def one_way(root: Path = ROOT) -> list[str]:
    problems = []
    for name, targets in edges(modules(root)).items():
        for target, line in targets:
            if name == "funasr_qwen4b":  # the package's face: `Transcriber`, lazily
                if target != "funasr_qwen4b.app.transcriber":
                    problems.append(f"{name}:{line} imports {target}")
            elif within(name, "training") and layer(target) != TOOLS and not (
                    layer(target) == FLOOR or within(target, "funasr_qwen4b.reference")
                    or checkpoint_builder(target)):
                problems.append(f"{name}:{line} (training: floor, reference and test checkpoints only) "
                                f"imports {target}")
            elif layer(target) > layer(name):
                problems.append(f"{name}:{line} imports upward into {target}")
    return problems


def heavy_floor_and_twins_apart(root: Path = ROOT) -> list[str]:
    problems = []
    for name, path in modules(root).items():
        for candidates, line in imports(name, path):
            target = candidates[-1]
            top = target.split(".")[0]
            if layer(name) == FLOOR and name != "funasr_qwen4b" and top in HEAVY:
                problems.append(f"{name}:{line} (floor) imports {target}")
            if within(name, "funasr_qwen4b.mlx_port") and (
                    top in ("torch", "funasr") or within(target, "funasr_qwen4b.reference")
                    or within(target, "funasr_qwen4b.convert")):
                problems.append(f"{name}:{line} (MLX twin) imports {target}")
            if within(name, "funasr_qwen4b.reference") and (
                    top in ("mlx", "mlx_lm") or within(target, "funasr_qwen4b.mlx_port")
                    or within(target, "funasr_qwen4b.convert")):
                problems.append(f"{name}:{line} (reference twin) imports {target}")
    return problems


def backend_chosen_once(root: Path = ROOT) -> list[str]:
    problems = []
    for name, targets in edges(modules(root)).items():
        if within(name, "funasr_qwen4b.parity") or layer(name) == TOOLS or name == "funasr_qwen4b.app.backends":
            continue
        twins = {t for t in TWIN_NAMES for target, _ in targets if within(target, t)}
        if len(twins) > 1:
            problems.append(f"{name} imports both twins ({', '.join(sorted(twins))}): choose a backend "
                            f"through app/backends.py")
    return problems


def cli_imported_by_cli_only(root: Path = ROOT) -> list[str]:
    return [f"{name}:{line} imports the command line ({target})"
            for name, targets in edges(modules(root)).items() if not within(name, "funasr_qwen4b.app.cli")
            for target, line in targets if within(target, "funasr_qwen4b.app.cli")]


def no_bare_names(root: Path = ROOT) -> list[str]:
    problems = []
    for folder in ("tests", *ROOMS):
        for path in (root / folder).rglob("*.py") if (root / folder).is_dir() else ():
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
                for n in names:
                    if n.split(".")[0] in BARE:
                        problems.append(f"{path.relative_to(root)}:{node.lineno} imports {n}: write "
                                        f"funasr_qwen4b.{n}")
    return problems


def circles(root: Path = ROOT) -> list[list[str]]:
    graph = {m: {t for t, _ in ts} for m, ts in edges(modules(root)).items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


RULES = {"one_way": one_way, "heavy_floor_and_twins_apart": heavy_floor_and_twins_apart,
         "backend_chosen_once": backend_chosen_once, "cli_imported_by_cli_only": cli_imported_by_cli_only,
         "no_bare_names": no_bare_names, "circles": circles}


@pytest.mark.parametrize("rule", RULES)
def test_the_house_keeps_its_rule(rule):
    problems = RULES[rule]()
    assert not problems, "\n".join(map(str, problems))


def test_every_room_is_scanned():
    names = modules()
    for room in ("funasr_qwen4b.app.backends", "funasr_qwen4b.reference.pipeline", "funasr_qwen4b.mlx_port.pipeline",
                 "funasr_qwen4b.convert.bundle", "funasr_qwen4b.parity.harness", "training.train",
                 "benchmarks.quantized_rows"):
        assert room in names, room


def test_floor_and_help_load_neither_torch_nor_mlx():
    code = ("import sys, funasr_qwen4b.bundle, funasr_qwen4b.audio, funasr_qwen4b.decoding, funasr_qwen4b.ctc; "
            "from funasr_qwen4b.app.cli import build_parser; build_parser(); "
            "bad = [m for m in ('torch', 'mlx', 'mlx.core', 'funasr', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_conversion_imports_no_funasr():
    code = ("import sys, funasr_qwen4b.convert.bundle, funasr_qwen4b.convert.sensevoice, funasr_qwen4b.convert.adaptor; "
            "assert 'funasr' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_users_parity_py_shadows_nothing(tmp_path):
    """Files named like our folders in the user's working directory change nothing."""
    for name in BARE:
        (tmp_path / f"{name}.py").write_text("raise SystemExit('imported the user file')\n", encoding="utf-8")
    code = ("from funasr_qwen4b.app.cli import main; import funasr_qwen4b.parity.cer, "
            "funasr_qwen4b.convert.writing, funasr_qwen4b.mlx_port.taps, funasr_qwen4b.reference.taps")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


# --- each rule fails on a planted violation -------------------------------------------

def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A copy of the house's skeleton (every module, empty) with `files` written into it."""
    for name, path in modules().items():
        dest = tmp_path / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("", encoding="utf-8")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return tmp_path


PLANTED = {
    "one_way": {"funasr_qwen4b/audio.py": "def f():\n    from funasr_qwen4b.parity import harness\n"},
    "one_way (tools)": {"funasr_qwen4b/app/outputs.py": "import training.train\n"},
    "one_way (training)": {"training/train.py": "from funasr_qwen4b.mlx_port import pipeline\n"},
    "heavy_floor_and_twins_apart": {"funasr_qwen4b/prompt.py": "def f():\n    from transformers import AutoTokenizer\n"},
    "heavy_floor_and_twins_apart (torch)": {"funasr_qwen4b/audio.py": "import torch\n"},
    "heavy_floor_and_twins_apart (mlx)": {"funasr_qwen4b/ctc.py": "import mlx.core as mx\n"},
    "heavy_floor_and_twins_apart (twins)": {"mlx_port/encoder.py": "from funasr_qwen4b.reference import encoder\n"},
    "backend_chosen_once": {"funasr_qwen4b/app/transcriber.py": "def f(b):\n    from funasr_qwen4b.mlx_port import pipeline\n"
                            "    from funasr_qwen4b.reference import pipeline as p\n"},
    "cli_imported_by_cli_only": {"funasr_qwen4b/app/bench.py": "from .cli.args import add_model_arg\n"},
    "no_bare_names": {"tests/test_x.py": "from parity.cer import Shard\n"},
    "circles": {"funasr_qwen4b/app/bench.py": "from . import bench_stages\n",
                "funasr_qwen4b/app/bench_stages.py": "from . import bench\n"},
}


@pytest.mark.parametrize("case", PLANTED)
def test_each_rule_fails_on_a_planted_violation(case, tmp_path):
    root = plant(tmp_path, PLANTED[case])
    assert not RULES[case.split(" ")[0]](plant(tmp_path / "clean", {})), "the empty skeleton breaks no rule"
    assert RULES[case.split(" ")[0]](root), f"{case}: the planted violation was not caught"
