"""Synthesis with yosys (generic LUT6 for `fpga`, NAND2/NOT cells for `asic`), the resource
report built from it and its plot."""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ... import progress
from ...errors import GatecError
from .design import MODULE, Design
from .simulate import need


def yosys_script(kind: str) -> str:
    if kind == "fpga":
        return (f"read_verilog model.v\nsynth -lut 6 -top {MODULE}\nflatten\nopt_clean -purge\n"
                f"tee -o yosys_stat.txt stat\ntee -o yosys_ltp.txt ltp -noff\n")
    return (f"read_verilog model.v\nsynth -top {MODULE}\nabc -g NAND\nopt_clean -purge\n"
            f"tee -o yosys_stat.txt stat\ntee -o yosys_ltp.txt ltp -noff\n")


def synthesize(verilogs: list[str], kind: str) -> list[dict]:
    """Runs Yosys on each Verilog text, side by side; returns their cell counts and longest
    paths (in cells)."""
    with tempfile.TemporaryDirectory(prefix="gatec-yosys-") as tmp:
        procs = []
        for i, verilog in enumerate(verilogs):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            (folder / "model.v").write_text(verilog)
            (folder / "synth.ys").write_text(yosys_script(kind))
            procs.append(subprocess.Popen([need("yosys"), "-q", "-s", "synth.ys"], cwd=folder, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        try:
            with progress.stage(f"synthesizing with yosys ({len(procs)} runs)"):
                outputs = [proc.communicate() for proc in procs]  # all finish before the folder goes
        except BaseException:  # Ctrl-C, SIGTERM: no yosys left running into a removed folder
            for proc in procs:
                proc.kill()
                proc.wait()
            raise
        results = []
        for i, (proc, (out, err)) in enumerate(zip(procs, outputs)):
            if proc.returncode != 0:
                raise GatecError(f"yosys failed on the generated Verilog: {(err or out).strip()[-500:]}")
            stat = (Path(tmp) / str(i) / "yosys_stat.txt").read_text()
            ltp = (Path(tmp) / str(i) / "yosys_ltp.txt").read_text()
            cells = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\$\S+)\s+(\d+)\s*$", stat, re.M)}
            depth = re.search(r"length=(\d+)", ltp)
            results.append({"cells": cells, "longest_path_cells": int(depth.group(1)) if depth else 0})
    return results


def flip_flops(cells: dict) -> int:
    return sum(n for name, n in cells.items() if "DFF" in name.upper())


# NAND2 equivalents by CMOS transistor count (a NAND2 is 4 transistors): NOT 2 -> 0.5,
# a static master-slave D flip-flop about 24 -> 6.
GE = {"$_NAND_": 1.0, "$_NOT_": 0.5}
GE_FLIP_FLOP = 6.0


def resources(design: Design, kind: str, full: dict, groupsum: dict, original_gates: int) -> dict:
    net = design.net
    if kind == "fpga":
        luts = full["cells"].get("$lut", 0)
        gs_luts = groupsum["cells"].get("$lut", 0)
        synthesized = {"luts": luts, "lut_inputs": 6, "flip_flops": flip_flops(full["cells"]),
                       "lut_depth": full["longest_path_cells"], "cells": full["cells"],
                       "groupsum_luts_alone": gs_luts,
                       "luts_per_original_gate": round(luts / max(original_gates, 1), 4),
                       "luts_per_live_gate": round(luts / max(design.live_gates, 1), 4)}
        main = "luts"
    else:
        cells = full["cells"]
        area = sum(GE.get(c, 0) * n for c, n in cells.items()) + GE_FLIP_FLOP * flip_flops(cells)
        gs_area = sum(GE.get(c, 0) * n for c, n in groupsum["cells"].items())
        synthesized = {"cells": cells, "cell_count": sum(cells.values()), "flip_flops": flip_flops(cells),
                       "gate_depth": full["longest_path_cells"], "nand2_equivalents": area,
                       "groupsum_nand2_equivalents_alone": gs_area,
                       "nand2_equivalents_per_original_gate": round(area / max(original_gates, 1), 4)}
        main = "nand2_equivalents"
    levels = np.bincount(design.live_levels, minlength=1)[1:].tolist()
    return {
        "target": kind, "module": MODULE,
        "synthesized_by_yosys": synthesized,
        "synthesis": ("yosys `synth -lut 6` then `flatten` (generic 6-input LUTs, abc mapping, each GroupSum counter "
                      "a module mapped on its own; no vendor carry chains or DSPs); LUTs counted on the flattened design"
                      if kind == "fpga" else
                      "yosys `synth` + `abc -g NAND` (generic NAND2/NOT cells, no liberty file); NAND2 equivalents "
                      "by transistor count: NAND2 1, NOT 0.5, D flip-flop 6"),
        "groupsum_alone": "the GroupSum compressor trees synthesized on their own (inputs free), for the breakdown; "
                          "in the whole design Yosys may share logic across the boundary",
        "network": {"gates_in_model": original_gates, "gates_in_compiled_netlist": int(net.n_gates),
                    "live_gates": design.live_gates, "gates_inside_counters": design.live_gates - len(design.assigns),
                    "input_bits": int(net.n_inputs), "classes": int(net.k),
                    "group_size": int(len(net.outputs) // net.k), "tau": float(net.tau),
                    "count_bits": design.count_width, "compressors": len(design.compressors),
                    "live_gates_per_level": levels},
        "estimated": {"logic_levels": design.depth, "pipeline_every_levels": design.pipeline,
                      "latency_cycles": design.stages, "register_bits": len(design.registers),
                      "fmax": "not known without vendor place-and-route",
                      "note": "logic levels count two-input gates and GroupSum compressors one level each; latency is "
                              "the number of pipeline register stages (0: combinational)"},
        "headline": main,
    }


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s, kind = res["synthesized_by_yosys"], res["target"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if kind == "fpga":
        total, gs, unit = s["luts"], s["groupsum_luts_alone"], "LUT6"
    else:
        total, gs, unit = s["nand2_equivalents"], s["groupsum_nand2_equivalents_alone"], "NAND2 equivalents"
    bars = {"whole design": total, "GroupSum alone": gs, "gates (difference)": max(total - gs, 0)}
    left.bar(list(bars), list(bars.values()), color=["C0", "C1", "C2"])
    for i, v in enumerate(bars.values()):
        left.text(i, v, f"{v:g}", ha="center", va="bottom", fontsize=8)
    left.set_ylabel(unit)
    left.set_title(f"{kind}: synthesized by yosys ({res['network']['gates_in_model']} gates in model)", fontsize=9)
    per_level = res["network"]["live_gates_per_level"]
    right.bar(np.arange(1, len(per_level) + 1), per_level, color="C2")
    right.set_xlabel("logic level")
    right.set_ylabel("live gates")
    right.set_title("live gates per logic level (netlist, not synthesized)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
