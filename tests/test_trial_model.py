"""Model builder: every op, every cell kind and random architectures build, run forward and backward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.spec import OP_KINDS, Architecture, Cell, Op, Stage
from katib_nas.suggestion.core.algorithms.nas_random import sample_architecture
from katib_nas.suggestion.core.space import parse_nas_config
from katib_nas.trial_image.measure import count_parameters, measure_latency_ms, model_macs
from katib_nas.trial_image.model import build_model
from katib_nas.trial_image.ops import OPS

from .conftest import REPO, load_yaml
from .strategies import architectures, random_architecture, random_op

torch.set_num_threads(1)


def run_forward_backward(arch: Architecture, batch: int = 3, active: int = 0) -> torch.Tensor:
    """Build (choice cells running alternative `active`), run a training forward and backward pass."""
    torch.manual_seed(0)
    model = build_model(arch)
    for body in model.choice_bodies():
        body.set_active(active)
    model.record_branch_stats(True)
    height, width, channels = arch.input_shape
    logits = model(torch.randn(batch, channels, height, width))
    assert logits.shape == (batch, arch.num_classes)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(batch) % arch.num_classes).backward()
    head = model.head[-1]
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
    return logits


def one_cell_arch(cell: Cell, width: int = 7, shape: tuple[int, int, int] = (9, 7, 2)) -> Architecture:
    return Architecture(shape, 3, 4, (Stage(width, 1, (cell,)),)).validate()


def cell_output_shape(arch: Architecture, index: int = 0) -> tuple[int, ...]:
    model = build_model(arch).eval()
    seen: list[tuple[int, ...]] = []
    model.cells[index].register_forward_hook(lambda module, inputs, output: seen.append(tuple(output.shape)))
    height, width, channels = arch.input_shape
    with torch.no_grad():
        model(torch.randn(2, channels, height, width))
    return seen[0]


def test_registry_has_a_builder_for_every_op_kind() -> None:
    assert set(OPS) == set(OP_KINDS)


@pytest.mark.parametrize("kind", list(OP_KINDS))
@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("layout", ["alone", "branches", "choice"])
def test_every_op_in_every_cell_layout_keeps_width_and_resolution(kind: str, kernel: int, layout: str) -> None:
    _, has_kernel, mult_meaning = OP_KINDS[kind]
    op = Op(kind, kernel if has_kernel else 0, 2 if mult_meaning else 1)
    ops = {"alone": (op,), "branches": (Op("conv", 3), op, Op("identity")), "choice": (Op("conv", 1), op)}[layout]
    arch = one_cell_arch(Cell(ops=ops, choice=layout == "choice", residual=True))
    run_forward_backward(arch, active=1 if layout == "choice" else 0)
    assert cell_output_shape(arch) == (2, 7, 9, 7)


@pytest.mark.parametrize("seed", range(40))
def test_seeded_random_architectures_build_and_train_one_step(seed: int) -> None:
    run_forward_backward(random_architecture(seed))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_hypothesis_architectures_build_and_train_one_step(arch: Architecture) -> None:
    run_forward_backward(arch, batch=2)


def test_every_nas_random_proposal_builds() -> None:
    document = load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")
    space = parse_nas_config(document["spec"]["nasConfig"])
    rng = np.random.default_rng(7)
    for _ in range(12):
        run_forward_backward(sample_architecture(space, rng, stem_width=8, skip_probability=0.5), batch=2)


def test_branches_split_the_cell_width_and_stay_in_op_order() -> None:
    arch = decode("in6x6x1-cls2-stem3/w8:c1+id+zero")
    model = build_model(arch).eval()
    x = torch.randn(2, 8, 6, 6)
    assert [branch(x).shape[1] for branch in model.cells[0].body.branches] == [3, 3, 2]
    out = model.cells[0].body(x)
    assert torch.equal(out[:, 3:6], x[:, 3:6])  # identity keeps its own slice
    assert torch.count_nonzero(out[:, 6:8]) == 0  # zero branch


def test_a_cell_of_identities_passes_its_input_through() -> None:
    arch = decode("in5x5x1-cls2-stem4/w4:id+id+id")
    model = build_model(arch)
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(model.cells[0](x, []), x)


def test_branch_stats_equal_the_mean_squared_branch_outputs() -> None:
    arch = decode("in8x8x1-cls3-stem4/w9:c3+s5+mp3/w6s2:c1_mb3e2@0")
    torch.manual_seed(1)
    model = build_model(arch)
    model.record_branch_stats(True)
    recorded: dict[tuple[int, int], list[float]] = {}
    for c, body in enumerate(model.bodies()):
        modules = body.branches if hasattr(body, "branches") else body.alternatives
        for b, module in enumerate(modules):
            module.register_forward_hook(lambda m, i, out, key=(c, b): recorded.setdefault(key, []).append(
                float(out.detach().square().mean())))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    stats = model.branch_stats()
    assert len(stats) == 2 and len(stats[0]) == 3 and len(stats[1]) == 2
    for b in range(3):
        assert stats[0][b] == pytest.approx(np.mean(recorded[(0, b)]), rel=1e-5)
    assert stats[1][0] == pytest.approx(np.mean(recorded[(1, 0)]), rel=1e-5)
    assert np.isnan(stats[1][1])  # the inactive alternative never ran
    model.eval()
    model(torch.randn(2, 1, 8, 8))  # evaluation does not count
    assert model.branch_stats() == stats


def test_choice_cell_runs_only_the_active_alternatives() -> None:
    arch = decode("in6x6x1-cls2-stem4/w4:c3_s5_mb3e2")
    model = build_model(arch)
    body = model.choice_bodies()[0]
    for active in ((0,), (2,), (1, 2)):
        body.set_active(active)
        model.zero_grad(set_to_none=True)
        model(torch.randn(2, 1, 6, 6)).sum().backward()
        with_grad = {i for i, alt in enumerate(body.alternatives) if any(p.grad is not None for p in alt.parameters())}
        assert with_grad == set(active)
    with pytest.raises(ValueError, match="outside"):
        body.set_active(3)


def test_skip_inputs_are_pooled_projected_and_gated() -> None:
    # 9x7 input: stage sizes 9x7, 4x3, 2x1; cell 2 takes cells 0 and 1 across two reductions.
    arch = decode("in9x7x1-cls2-stem4/w4:c3/w6s2:c3/w8s2:c3@0.1")
    model = build_model(arch)
    skip_layers = model.cells[2].skip_inputs
    assert skip_layers[0].adapt[0].kernel_size == 4 and skip_layers[1].adapt[0].kernel_size == 2
    model(torch.randn(3, 1, 9, 7)).sum().backward()
    gates = model.cells[2].gates
    assert gates is not None and gates.grad is not None and torch.count_nonzero(gates.grad) == 2
    assert model.skip_gates() == [[], [], [0.0, 0.0]]


def test_dense_skip_inputs_leave_the_activation_scale_unchanged_at_initialisation() -> None:
    """Twelve envelope cells, each taking every earlier cell but its predecessor: at initialisation every cell's
    output keeps the mean square of a conv-BN-ReLU output (about 0.5) instead of compounding the skips."""
    cells = ":".join("c1+c3+s3" + (f"@{'.'.join(map(str, range(i - 1)))}" if i > 1 else "") for i in range(12))
    model = build_model(decode(f"in16x16x1-cls10-stem8/w9:{cells}")).train()
    scales: list[float] = []
    for cell in model.cells:
        cell.register_forward_hook(lambda module, inputs, out: scales.append(float(out.detach().square().mean())))
    torch.manual_seed(0)
    model(torch.randn(32, 1, 16, 16))
    assert len(scales) == 12 and all(0.35 < scale < 0.65 for scale in scales), scales


def test_modules_report_the_spec_they_were_built_from() -> None:
    text = "in8x8x1-cls10-stem8/w12:c1+s3m2+dc3@r/w16s2:mb5e3_d3m2_zero:ap2+mp4+id@0.1"
    model = build_model(decode(text))
    assert model.config() == {"architecture": text}
    assert [cell.token for cell in model.cells] == ["c1+s3m2+dc3@r", "mb5e3_d3m2_zero", "ap2+mp4+id@0.1"]
    assert [branch.token for branch in model.cells[0].body.branches] == ["c1", "s3m2", "dc3"]
    assert model.cells[1].body.alternatives[1].config() == {"op": "d3m2"}


def test_mac_count_matches_a_hand_count() -> None:
    model = build_model(decode("in4x4x1-cls2-stem2/w2:c3"))
    stem, cell, head = 16 * 2 * 9 * 1, 16 * 2 * 9 * 2, 2 * 2
    assert model_macs(model, (4, 4, 1)) == stem + cell + head
    assert count_parameters(model) == (2 * 9 + 2 * 2) + (2 * 2 * 9 + 2 * 2) + (2 * 2 + 2)


def test_latency_is_a_positive_median() -> None:
    arch = random_architecture(3)
    latency = measure_latency_ms(build_model(arch), arch.input_shape, warmup=2, repeats=5)
    assert 0 < latency < 10_000


def test_random_ops_cover_every_kind() -> None:
    import random

    rng = random.Random(0)
    kinds = {random_op(rng.randint).kind for _ in range(300)}
    assert kinds == set(OP_KINDS)


def test_architecture_text_survives_the_builder() -> None:
    for seed in range(10):
        arch = random_architecture(seed)
        assert decode(build_model(arch).arch_text) == arch
        assert build_model(arch).arch_text == encode(arch)


def test_taylor_statistic_is_the_mean_first_order_loss_change_of_removing_each_branch() -> None:
    torch.manual_seed(3)
    model = build_model(decode("in6x6x1-cls3-stem4/w6:c1+c3+s3/w8s2:mb3e3_c3")).train()
    x, y = torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 1, 0])
    outputs: dict[int, torch.Tensor] = {}
    for k, branch in enumerate(model.cells[0].body.branches):
        branch.register_forward_hook(lambda module, inputs, out, k=k: outputs.__setitem__(k, out))
    model.record_branch_stats(True)
    F.cross_entropy(model(x), y).backward()
    model.record_branch_stats(False)
    # By hand: per sample, sum over the branch's output of y * d(loss of that sample)/dy.
    outputs.clear()
    losses = F.cross_entropy(model(x), y, reduction="none")
    grads = torch.autograd.grad(losses.sum(), [outputs[k] for k in range(3)])
    expected = [float((g * outputs[k]).sum(dim=(1, 2, 3)).abs().mean()) / outputs[k].shape[1]
                for k, g in enumerate(grads)]
    assert model.branch_stats("taylor")[0] == pytest.approx(expected, rel=1e-4)
    choice_taylor = model.branch_stats("taylor")[1]
    assert choice_taylor[0] > 0 and math.isnan(choice_taylor[1])  # only the active alternative ran


@pytest.mark.parametrize("statistic", ["taylor", "mean-square"])
def test_branch_statistics_are_per_channel_so_a_wider_branch_does_not_rank_higher_for_its_width(statistic) -> None:
    """Two branches computing the same function on every channel, 3 and 2 channels wide (a split width of 5),
    get the same statistic: every weight is the same across channels, so every channel carries the same
    activation and the same gradient."""
    torch.manual_seed(0)
    model = build_model(decode("in6x6x1-cls3-stem4/w5:c1+c1")).train()
    body = model.cells[0].body
    assert body.widths == [3, 2]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.fill_(0.3)
            elif isinstance(module, torch.nn.Linear):  # class k weighs every feature by 0.1 k
                module.weight.copy_(torch.arange(module.out_features, dtype=torch.float32)[:, None] * 0.1
                                    * torch.ones_like(module.weight))
    model.record_branch_stats(True)
    x, y = torch.randn(8, 1, 6, 6), torch.tensor([0, 1, 2, 1, 0, 2, 1, 0])
    F.cross_entropy(model(x), y).backward()
    model.record_branch_stats(False)
    wide, narrow = model.branch_stats(statistic)[0]
    assert wide > 0 and wide == pytest.approx(narrow, rel=1e-4)


def test_relu6_keeps_no_copy_of_its_input_and_has_the_same_gradient() -> None:
    from katib_nas.trial_image.ops import ReLU6

    x = torch.linspace(-2, 8, 101).repeat(2, 1)  # includes 0 and 6 exactly
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = torch.nn.ReLU6()(a * 1.0)
    expected.backward(torch.ones_like(expected))
    got = ReLU6().train()(b * 1.0)
    got.backward(torch.ones_like(got))
    assert torch.equal(expected, got) and torch.equal(a.grad, b.grad)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t, lambda t: t):
        y = ReLU6().train()(b * 1.0)
    assert saved == [y.data_ptr()]  # only its own output is kept for backward
