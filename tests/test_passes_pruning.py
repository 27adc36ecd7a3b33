"""Structured pruning of gated networks: gates that are off, residual branches, unrouted experts;
the pruned model compiles to cpu and verifies against the original; MACs reported before/after."""
import numpy as np
import torch

import gatec
from gatec import passes
from gatec.nn import GLU, GatedResidual, MixtureOfExperts
from gatec.passes.prune_common import counts, run_ort


class GatedStack(torch.nn.Module):
    """Two gated residual blocks and a GLU, with gates switched off exactly (sigmoid(-1e4) = 0)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.r1, self.r2, self.glu = GatedResidual(16, 64), GatedResidual(16, 64), GLU(16, 64, form="two_linear")
        with torch.no_grad():
            self.r1.g[:] = -1e4  # the whole residual branch off
            self.r2.g[:8] = -1e4  # half of the channels off
            self.glu.gate.weight[:40] = 0  # 40 of 64 GLU units always closed
            self.glu.gate.bias[:40] = -1e4

    def forward(self, x):
        return self.glu(self.r2(self.r1(x)))


def moe():
    torch.manual_seed(1)
    m = MixtureOfExperts(16, 64, experts=6, k=2)
    with torch.no_grad():
        m.router.bias[[1, 4]] = -1e4  # never in the top 2
    return m.eval()


def test_gates_and_residual_branches_are_pruned_and_verify(tmp_path):
    model = GatedStack().eval()
    ir = gatec.load(model, [[1, 16]]).ir
    out = passes.apply(ir, ["prune-gates"])
    stats = out.passes[-1]
    removed = " | ".join(stats["removed"])
    assert "residual branch '/r1/Mul'" in removed and "40 of 64 GLU units" in removed and "8 of 16 channels" in removed
    before, after = stats["before"], stats["after"]
    assert before["macs"] == 7168 and after["macs"] == 3200  # r1's branch (2 x 16 x 64) and 40 GLU units gone
    assert after["nonzero_macs"] == after["macs"] - 8 * 64  # r2's zeroed channels
    assert stats["max_abs_err"] < 1e-5
    art = gatec.compile(model, "cpu", tmp_path / "a", input_shapes=[[1, 16]], passes_to_run=["prune-gates"])
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] < 1e-4
    assert art.manifest["passes"][0]["after"]["macs"] == 3200


def test_unrouted_experts_are_removed(tmp_path):
    model = moe()
    ir = gatec.load(model, [[1, 16]]).ir
    out = passes.apply(ir, ["prune-gates"])
    stats = out.passes[-1]
    assert stats["removed"] == ["experts [1, 4] of 6 (router '/router/Gemm')"]
    per_expert = 2 * 16 * 64
    assert stats["before"]["macs"] - stats["after"]["macs"] == 2 * per_expert + 2 * 16  # two experts, two router rows
    assert stats["max_abs_err"] == 0.0
    art = gatec.compile(model, "cpu", tmp_path / "m", input_shapes=[[1, 16]], opt_level=2)  # -O2 prunes gated nets
    assert art.manifest["verification"]["ok"]
    assert [p["name"] for p in art.manifest["passes"]] == ["prune-gates"]
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    assert np.abs(art.run(x)[0] - model(torch.from_numpy(x)).detach().numpy()).max() < 1e-4


def test_approximate_pruning_reports_its_error_and_verifies_within_it(tmp_path):
    torch.manual_seed(2)
    model = GLU(16, 64, form="two_linear").eval()
    with torch.no_grad():
        model.gate.weight[:20] *= 0.01
        model.gate.bias[:20] = -9.0  # sigmoid about 1e-4: off at threshold 1e-3, not exactly
    ir = gatec.load(model, [[1, 16]]).ir
    out = passes.apply(ir, ["prune-gates:1e-3"])
    stats = out.passes[-1]
    assert stats["removed"] == ["20 of 64 GLU units of '/Mul'"]
    assert 0 < stats["max_abs_err"] < 1e-2
    art = gatec.compile(model, "cpu", tmp_path / "g", input_shapes=[[1, 16]], passes_to_run=["prune-gates:1e-3"])
    assert art.manifest["verification"]["ok"]  # within the target's tolerance plus the reported error


def test_magnitude_pruning_reaches_its_sparsity():
    ir = gatec.load(GatedStack().eval(), [[1, 16]]).ir
    out = passes.apply(ir, ["magnitude-prune:0.75"])
    stats = out.passes[-1]
    assert stats["matrices"] == 7
    for init in out.model.graph.initializer:
        if init.name.endswith("weight"):
            w = np.frombuffer(init.raw_data, np.float32) if init.raw_data else np.array(init.float_data)
            assert abs((w == 0).mean() - 0.75) < 0.01
    assert stats["after"]["nonzero_macs"] < 0.3 * stats["before"]["nonzero_macs"]
    assert stats["max_abs_err"] > 0  # approximate, and says so
    assert np.isfinite(run_ort(out, [[np.zeros((2, 16), np.float32)]])[0][0]).all()


def test_magnitude_pruning_reports_its_error_on_the_data_given():
    from gatec.passes.prune_common import calibration_sets, output_error
    ir = gatec.load(GatedStack().eval(), [[1, 16]]).ir
    x = 100 * np.random.default_rng(3).normal(size=(64, 16)).astype(np.float32)  # far wider than the random inputs
    on_data = passes.apply(ir, ["magnitude-prune:0.75"], [x])
    on_random = passes.apply(ir, ["magnitude-prune:0.75"])
    assert on_data.passes[-1]["max_abs_err"] == output_error(ir, on_data, calibration_sets(ir, [x]))
    assert on_data.passes[-1]["max_abs_err"] > 10 * on_random.passes[-1]["max_abs_err"]


def test_nothing_to_prune_changes_nothing():
    ir = gatec.load(GLU(8, 16, form="two_linear").eval(), [[1, 8]]).ir
    out = passes.apply(ir, ["prune-gates"])
    assert out.passes[-1]["removed"] == [] and out.passes[-1]["after"] == counts(ir)
