"""Files written by gatec 0.1.0 (tests/fixtures/make_release_fixtures.py, run before the package
was re-laid out): its pickled models still load, its artifact folders still open and run, and
the same inputs still give byte-identical artifacts."""
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import gatec

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "release_0_1"
BUILDS = json.loads((FIXTURES / "artifacts.json").read_text())
SHAPES = {"gated.pt": [[1, 12]], "qat.pt": [[1, 12]], "logic.pt": [[1, 16]]}
# Arithmetic artifacts record the float error measured on this host (it follows the CPU's float
# kernels); every other byte must match.
HOST_DEPENDENT = {"verification.png"}
# 0.1.0 gave every layer of a float model ap_fixed<16,6> on fpga; the default is now --precision
# auto, so those builds name the type the release used (and the manifest records that option)
RELEASE_DEFAULTS = {("gated.pt", "fpga"): {"precision": "ap_fixed<16,6>"}}
# Files gatec now writes better on purpose: the release's fpga Verilog computed an output GroupSum
# counts twice as two gates (the last layer holds one per position); fold() now makes the second
# an alias of the first, so the design is smaller and yosys maps it to fewer LUTs.
# The c target's gatec_logic.c packs its input without a branch on each bit (the same bits,
# 7x faster on random inputs).
IMPROVED = {("logic.pt", "fpga"): {"model.v", "resources.json", "resources.png"}, ("logic.pt", "c"): {"gatec_logic.c"}}


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest_without_verification(path: Path) -> dict:
    manifest = json.loads(path.read_text())
    manifest.pop("verification")
    manifest.pop("options")
    return manifest


def without_options(path: Path):
    """An hls4ml artifact's file less what records the options given: the settings' precision
    (hls_config.json) and the library stamp derived from the settings (config and build script)."""
    if path.name == "hls_config.json":
        config = json.loads(path.read_text())
        config["settings"].pop("precision")
        return config
    assert path.name in ("hls4ml_config.yml", "build_lib.sh"), path.name
    return re.sub(r"^(Stamp: |LIB_STAMP=)\S+$", r"\1", path.read_text(), flags=re.M)


def manifest_with_exact_edges(path: Path) -> dict:
    """The release wrote its histogram's decade edges through numpy's 10.0 ** arange, whose last
    bit depends on the CPU's SIMD (9.999999999999999e-06 with AVX-512, 1e-05 without); gatec now
    writes the decimals themselves, on every host. Every other value must match."""
    manifest = json.loads(path.read_text())
    for output in (manifest.get("verification") or {}).get("outputs", []):
        edges = output["error_histogram"]["decade_edges"]
        output["error_histogram"]["decade_edges"] = [float(f"{e:.12g}") for e in edges]
    return manifest


@pytest.mark.parametrize("name", ["gated.pt", "qat.pt", "logic.pt"])
def test_pickled_models_of_the_release_load_and_compute_the_same(name):
    module = torch.load(FIXTURES / name, weights_only=False)
    io = np.load(FIXTURES / f"{Path(name).stem}_io.npz")
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(io["x"])).numpy(), io["y"], rtol=1e-5, atol=1e-6)
    source = gatec.load(FIXTURES / name, SHAPES[name])  # gatec's own allowlisted unpickler
    np.testing.assert_allclose(source.reference([io["x"]])[0], io["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fixture", sorted(BUILDS))
def test_artifact_folders_of_the_release_open_and_run(fixture, tmp_path):
    entry = BUILDS[fixture]
    folder = tmp_path / fixture
    shutil.copytree(FIXTURES / "artifacts" / fixture, folder)
    art = gatec.Artifact.open(folder)
    assert art.target == entry["target"]
    io = np.load(FIXTURES / f"{Path(entry['model']).stem}_io.npz")
    out = art.run(io["x"])[0]
    if art.manifest["kind"] == "logic":
        np.testing.assert_array_equal(out, io["y"])
    else:
        assert np.abs(out - io["y"]).max() < 0.05  # hls4ml's ap_fixed<16,6> bound, ONNX Runtime far inside it


@pytest.mark.parametrize("fixture", sorted(BUILDS))
def test_same_inputs_give_the_bytes_the_release_wrote(fixture, tmp_path):
    entry = BUILDS[fixture]
    options = {**entry["options"], **RELEASE_DEFAULTS.get((entry["model"], entry["target"]), {})}
    art = gatec.compile(FIXTURES / entry["model"], entry["target"], tmp_path / fixture,
                        input_shapes=SHAPES[entry["model"]], options=options, samples=64)
    now, then = digest(art.path), entry["files"]
    assert sorted(now) == sorted(then)
    if art.manifest["kind"] == "logic":
        improved = IMPROVED.get((entry["model"], entry["target"]), set())
        assert {k: v for k, v in now.items() if k != "manifest.json" and k not in improved} == \
            {k: v for k, v in then.items() if k != "manifest.json" and k not in improved}
        if "resources.json" in improved:
            luts = [json.loads((p / "resources.json").read_text())["synthesized_by_yosys"]["luts"]
                    for p in (art.path, FIXTURES / "artifacts" / fixture)]
            assert luts[0] < luts[1]
        now_manifest, then_manifest = (manifest_with_exact_edges(p / "manifest.json")
                                       for p in (art.path, FIXTURES / "artifacts" / fixture))
        # a target's description may grow (asic gained arithmetic networks); what the release said stays first
        assert now_manifest.pop("target_description").startswith(then_manifest.pop("target_description"))
        # the gate counts gained what each target computes (gate_kinds); the release's counts stay
        now_gates, then_gates = now_manifest.pop("gates"), then_manifest.pop("gates")
        assert {k: now_gates[k] for k in then_gates} == then_gates
        assert now_manifest == then_manifest
        return
    for name in now:
        if name == "manifest.json":
            assert manifest_without_verification(art.path / name) == \
                manifest_without_verification(FIXTURES / "artifacts" / fixture / name)
            assert art.manifest["options"] == options
        elif name not in HOST_DEPENDENT and now[name] != then[name] and options != entry["options"]:
            # the named type is recorded in the settings, and hls4ml's stamp is derived from them
            assert without_options(art.path / name) == without_options(FIXTURES / "artifacts" / fixture / name), name
        elif name not in HOST_DEPENDENT:
            assert now[name] == then[name], name
