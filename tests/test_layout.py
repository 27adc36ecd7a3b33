"""The package's layout: data flows one way (front end -> IR -> passes -> target -> artifact ->
emulator), so every module imports only its own stage and the stages before it; no import
cycle; the IR core imports nothing of gatec but its errors; the compiler and the CLI name no
target (targets are found by folder)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gatec"
# stage of each top-level part of the package, in the order data flows through them
STAGES = {"version": 0, "errors": 0, "progress": 0, "ir": 1, "nn": 2, "qat": 2, "custom_op": 2, "frontend": 3, "passes": 4,
          "engine": 5, "targets": 5, "emulator": 6, "compiler": 7, "output": 7, "summary": 8, "bench": 8,
          "quantize": 8, "sweep": 8, "cli": 9, "__init__": 10, "__main__": 10}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the gatec modules it imports (anywhere in the file, function bodies included)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        arrows = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in known:  # `import gatec.ir.logic` names a module; `gatec.x.y` a name in x
                    t = t.rpartition(".")[0]
                if t.startswith("gatec") and t != name:
                    arrows.add(t)
        graph[name] = arrows
    return graph


def stage(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    return STAGES[part]


def test_every_part_of_the_package_has_a_stage():
    missing = {m.split(".")[1] for m in modules() if "." in m and m.split(".")[1] not in STAGES}
    assert not missing, f"add these to STAGES: {sorted(missing)}"


def test_imports_run_with_the_flow():
    against = [(a, b) for a, bs in import_graph().items() for b in bs if stage(b) > stage(a)]
    assert not against, "imports against the flow: " + ", ".join(f"{a} -> {b}" for a, b in sorted(against))


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_ir_core_imports_only_errors():
    outside = {(a, b) for a, bs in import_graph().items() if a.startswith("gatec.ir") for b in bs
               if not b.startswith("gatec.ir") and b != "gatec.errors"}
    assert not outside


@pytest.mark.parametrize("module", ["cli.py", "compiler.py"])
def test_compiler_and_cli_name_no_target(module):
    from gatec import targets
    text = (PACKAGE / module).read_text()
    strings = {n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for name in targets.names():
        assert not any(s == name or f"targets.{name}" in s for s in strings), (module, name)
        assert f"targets.{name}" not in text and f"targets import {name}" not in text


@pytest.mark.parametrize("command", [["--help"], ["targets"], ["passes"], ["compile", "--help"], ["sweep", "--help"]])
def test_commands_that_need_no_model_do_not_import_torch(command):
    """Start-up: these import neither torch nor hls4ml (benchmarks/bench_startup.py times them)."""
    import subprocess
    import sys
    probe = ("import sys\nfrom gatec.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "heavy = sorted(m for m in ('torch', 'hls4ml', 'qonnx', 'ray') if m in sys.modules)\n"
             "print('heavy:', ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "heavy:"


def test_an_onnx_logic_network_compiles_and_runs_without_torch(tmp_path):
    """Model file to first result: an ONNX logic network loads, passes, builds and runs with neither
    torch nor qonnx imported (benchmarks/bench_logic.py times it)."""
    import subprocess
    import sys
    import numpy as np
    from test_c_target import logic_onnx, random_layers
    path = logic_onnx(tmp_path / "net.onnx", 16, random_layers(np.random.default_rng(0), 16, [40, 20]), 2, 1.0)
    probe = ("import sys, numpy as np, gatec\n"
             f"art = gatec.compile({str(path)!r}, 'cpu', {str(tmp_path / 'a')!r}, verify=False)\n"
             "print(art.run(np.ones((3, 16), np.uint8))[0].shape)\n"
             "print('heavy:', ','.join(sorted(m for m in ('torch', 'qonnx', 'hls4ml') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert [line.strip() for line in out.splitlines()[-2:]] == ["(3, 2)", "heavy:"]
