"""The house can be read from its folders: imports go one way
(floor ← twins and convert ← parity ← application), the floor needs neither
torch nor MLX, the twins never import each other, and no import circle
exists anywhere. Every import is seen, including those inside functions."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("funasr_qwen4b", "reference", "mlx_port", "convert", "parity", "training")
# Layer of each top-level room; a module may import its own layer or lower ones.
FLOOR, TWINS, PARITY, APP = 0, 1, 2, 3
HEAVY = {"torch", "mlx", "mlx_lm", "funasr"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


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


def layer(name: str) -> int | None:
    top = name.split(".")[0]
    if name == "funasr_qwen4b.app" or name.startswith("funasr_qwen4b.app."):
        return APP
    return {"funasr_qwen4b": FLOOR, "reference": TWINS, "mlx_port": TWINS, "convert": TWINS,
            "parity": PARITY}.get(top)


def project_edges() -> dict[str, set[tuple[str, int]]]:
    mods = modules()
    edges = {}
    for name, path in mods.items():
        targets = set()
        for candidates, line in imports(name, path):
            target = next((c for c in candidates if c in mods), None)
            if target is not None and target != name:
                targets.add((target, line))
        edges[name] = targets
    return edges


def test_imports_go_one_way():
    problems = []
    for name, targets in project_edges().items():
        here = layer(name)
        for target, line in targets:
            there = layer(target)
            if name == "funasr_qwen4b":  # the package's face: `Transcriber`, lazily, in __getattr__ only
                if target != "funasr_qwen4b.app.transcriber":
                    problems.append(f"{name}:{line} imports {target}")
                continue
            if here is None:  # training/: a tool on the floor and the reference path, never parity
                if not target.startswith(("training", "funasr_qwen4b", "reference")) or layer(target) == APP:
                    problems.append(f"{name}:{line} imports {target}")
                continue
            if there is not None and there > here:
                problems.append(f"{name}:{line} imports upward into {target}")
    assert not problems, "\n".join(problems)


def test_floor_is_torch_and_mlx_free_and_twins_stay_apart():
    problems = []
    for name, path in modules().items():
        for candidates, line in imports(name, path):
            target = candidates[-1]
            top = target.split(".")[0]
            if layer(name) == FLOOR and name != "funasr_qwen4b" and top in HEAVY:
                problems.append(f"{name}:{line} (floor) imports {target}")
            if name.startswith("mlx_port") and top in ("torch", "funasr", "reference", "convert"):
                problems.append(f"{name}:{line} (MLX twin) imports {target}")
            if name.startswith("reference") and top in ("mlx", "mlx_lm", "mlx_port", "convert"):
                problems.append(f"{name}:{line} (reference twin) imports {target}")
    assert not problems, "\n".join(problems)


def test_no_import_circle():
    edges = {m: {t for t, _ in ts} for m, ts in project_edges().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_backend_is_chosen_in_one_place():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in modules().values()
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "backend ==" in line]
    assert len(hits) == 1 and hits[0].startswith("funasr_qwen4b/app/backends.py"), hits


def test_floor_and_help_load_neither_torch_nor_mlx():
    code = ("import sys, funasr_qwen4b.bundle, funasr_qwen4b.audio, funasr_qwen4b.decoding, funasr_qwen4b.ctc; "
            "from funasr_qwen4b.app.cli import build_parser; build_parser(); "
            "bad = [m for m in ('torch', 'mlx', 'mlx.core', 'funasr') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The scan is not fooled by a lazy import: an import inside a function counts."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from parity import harness\n    import torch\n", encoding="utf-8")
    found = {name for candidates, _ in imports("funasr_qwen4b.m", f) for name in candidates}
    assert {"parity.harness", "torch"} <= found
