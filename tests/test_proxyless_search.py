"""ProxylessNAS one-shot search on real torch modules and sklearn digits: gates, gradients, rescale, derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.oneshot_settings import SearchConfig
from katib_nas.contract.supernet import derive
from katib_nas.trial_image.data import load_digits, split_dataset
from katib_nas.trial_image.proxyless.gates import PathPair, pair_logit_grad, rescale_pair
from katib_nas.trial_image.proxyless.latency_loss import LatencyModel, hardware_loss
from katib_nas.trial_image.proxyless.profiler import Timing, profile_supernet
from katib_nas.trial_image.proxyless.search import Optimisation, SupernetSearch, evaluate_derived, run_search
from katib_nas.trial_image.proxyless.search_trial import split_search_data

OPS = "mb3e3_mb3e6_mb5e3_c3_zero"
SUPERNET = decode(f"in8x8x1-cls10-stem8/w8:{OPS}@r:{OPS}@r/w16s2:{OPS}@r")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    return split_search_data(split_dataset(load_digits(), 0.2), 0.25, CPU)


@pytest.fixture(scope="module")
def latency() -> LatencyModel:
    table = profile_supernet(SUPERNET, CPU, Timing(warmup=2, repeats=5))
    return LatencyModel.from_table(table, SUPERNET)


def make_search(config: SearchConfig, latency: LatencyModel | None = None) -> SupernetSearch:
    torch.manual_seed(config.seed)
    return SupernetSearch(SUPERNET, config, Optimisation(batch_size=64), latency, CPU, weight_steps=100)


def test_weight_step_trains_only_the_sampled_path(digits) -> None:  # type: ignore[no-untyped-def]
    search = make_search(SearchConfig(seed=3))
    search.weight_step(digits.weight_x[:64], digits.weight_y[:64])
    for block in search.blocks:
        (active,) = block.active
        for index, alternative in enumerate(block.alternatives):
            grads = [p.grad for p in alternative.parameters()]
            if index == active:
                assert all(g is not None and g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None for g in grads)


@pytest.mark.parametrize("seed", range(4))
def test_logits_get_a_gradient_unless_the_sampled_op_is_zero(digits, seed: int) -> None:  # type: ignore
    search = make_search(SearchConfig(seed=seed, loss="none"))
    x, y = digits.arch_x[:64], digits.arch_y[:64]
    for _ in range(3):
        step = search.arch_step(x, y)
        for alpha, cell, pair, updated in zip(search.logits.alphas, SUPERNET.cells, step.pairs, step.updated):
            assert pair.active != pair.other
            if cell.ops[pair.active].kind == "zero":
                assert not updated and alpha.grad is None
            else:
                assert updated and alpha.grad is not None
                outside = [i for i in range(len(cell.ops)) if i not in pair.involved]
                assert alpha.grad[list(pair.involved)].abs().min() > 0
                assert torch.all(alpha.grad[outside] == 0)


def test_gate_gradient_matches_a_finite_difference(digits) -> None:  # type: ignore[no-untyped-def]
    search = make_search(SearchConfig(seed=1, loss="none"))
    x, y = digits.arch_x[:32].double(), digits.arch_y[:32]
    search.network.double().eval()  # fixed BatchNorm statistics: the loss is a smooth function of the gates
    pair = PathPair(active=0, other=2)
    gates = [block.use_pair(pair) for block in search.blocks]
    F.cross_entropy(search.network(x), y).backward()
    analytic = float(gates[1].grad[2])
    eps = 1e-4
    losses = []
    with torch.no_grad():
        for sign in (1, -1):
            for block, gate in zip(search.blocks, gates):
                block.gates = gate.detach().clone()
            search.blocks[1].gates[2] = sign * eps
            losses.append(float(F.cross_entropy(search.network(x), y)))
    assert analytic == pytest.approx((losses[0] - losses[1]) / (2 * eps), rel=1e-3)


def test_pair_gradient_follows_the_softmax_over_the_pair() -> None:
    alpha = torch.tensor([0.3, -0.2, 0.9, 0.0])
    pair = PathPair(active=2, other=0)
    grad = pair_logit_grad(alpha, pair, (0.5, -0.25))
    q = torch.softmax(torch.tensor([0.9, 0.3]), 0)
    expected_active = 0.5 * q[0] * (1 - q[0]) + (-0.25) * q[1] * (0 - q[0])
    assert float(grad[2]) == pytest.approx(float(expected_active))
    assert float(grad[0]) == pytest.approx(float(-expected_active))  # the pair's gradients sum to zero
    assert float(grad[1]) == 0 and float(grad[3]) == 0


def test_rescale_restores_the_pair_mass() -> None:
    alpha = torch.tensor([0.1, 0.5, -0.3, 1.2, 0.0])
    before = torch.softmax(alpha, 0)
    pair = PathPair(active=1, other=3)
    alpha[1] += 0.7
    alpha[3] -= 0.2
    rescale_pair(alpha, pair, (0.5, 1.2))
    after = torch.softmax(alpha, 0)
    torch.testing.assert_close(after[[0, 2, 4]], before[[0, 2, 4]])
    assert float(after[1]) > float(before[1]) and float(after[3]) < float(before[3])


@pytest.mark.parametrize("loss", ["mullog", "addlin"])
def test_architecture_steps_leave_unsampled_probabilities_unchanged(digits, latency, loss: str) -> None:  # type: ignore
    target = latency.network_ms([0, 0, 0]) * 0.8
    search = make_search(SearchConfig(seed=5, loss=loss, target=target, archlr=0.05), latency)
    x, y = digits.arch_x[:64], digits.arch_y[:64]
    moved = 0
    for _ in range(6):
        before = [p.detach().clone() for p in search.logits.probs()]
        step = search.arch_step(x, y)
        assert math.isfinite(step.expected_ms) and step.expected_ms > 0
        for old, new, pair, updated in zip(before, search.logits.probs(), step.pairs, step.updated):
            outside = [i for i in range(len(old)) if i not in pair.involved]
            torch.testing.assert_close(new.detach()[outside], old[outside], rtol=0, atol=1e-6)
            if updated:
                moved += int(not torch.allclose(new.detach(), old))
    assert moved > 0


def test_hardware_loss_forms(latency) -> None:  # type: ignore[no-untyped-def]
    ce = torch.tensor(2.0)
    expected = torch.tensor(3.0)
    mullog = SearchConfig(loss="mullog", target=1.5, beta=0.6)
    assert float(hardware_loss(ce, expected, mullog)) == pytest.approx(2.0 * (math.log(3000) / math.log(1500)) ** 0.6)
    addlin = SearchConfig(loss="addlin", target=1.5, lambda_=0.1)
    assert float(hardware_loss(ce, expected, addlin)) == pytest.approx(2.0 + 0.1 * (3.0 - 1.5) / 1.5)
    assert float(hardware_loss(ce, expected, SearchConfig(loss="none"))) == 2.0
    uniform = [torch.full((5,), 0.2) for _ in SUPERNET.cells]
    mean = latency.fixed_ms + sum(sum(row) / 5 for row in latency.options_ms)
    assert float(latency.expected_ms(uniform)) == pytest.approx(mean, rel=1e-5)


def test_derivation_takes_the_argmax_of_every_block(digits) -> None:  # type: ignore[no-untyped-def]
    search = make_search(SearchConfig(seed=2))
    with torch.no_grad():
        for alpha, best in zip(search.logits.alphas, (4, 1, 3)):
            alpha[best] = 2.0
    result = search.result(arch_steps=0)
    assert result.choices == [4, 1, 3]
    assert encode(result.derived) == "in8x8x1-cls10-stem8/w8:zero@r:mb3e6@r/w16s2:c3@r"
    evaluate_derived(search, result.choices, digits)
    assert [block.active for block in search.blocks] == [(4,), (1,), (3,)]


def test_search_on_digits_learns_and_derives_a_network(digits) -> None:  # type: ignore[no-untyped-def]
    config = SearchConfig(epochs=5, warmup=1, loss="none", archlr=0.05, seed=0)
    search, result = run_search(SUPERNET, config, Optimisation(batch_size=64, lr=0.1, arch_every=2), digits, None)
    assert result.arch_steps > 0
    assert all(abs(sum(row) - 1) < 1e-5 for row in result.probabilities)
    assert any(max(row) > 0.21 for row in result.probabilities)
    _, accuracy = evaluate_derived(search, result.choices, digits)
    assert accuracy > 0.5
    assert [cell.ops[c] for cell, c in zip(SUPERNET.cells, result.choices)] == \
        [cell.ops[0] for cell in result.derived.cells]
    assert np.argmax(result.probabilities, axis=1).tolist() == result.choices


def test_latency_term_moves_every_sampled_pair_toward_its_faster_path(digits, latency) -> None:  # type: ignore
    """With the latency term dominating (add-linear, lambda 1000), one architecture step must raise the probability
    of the faster path of every updated pair, whatever the other paths' probabilities (3+ candidates per block)."""
    checked = 0
    for seed in range(8):
        search = make_search(SearchConfig(seed=seed, loss="addlin", target=1.0, lambda_=1000.0, archlr=0.05), latency)
        with torch.no_grad():
            for alpha in search.logits.alphas:
                alpha.copy_(torch.randn(alpha.shape, generator=torch.Generator().manual_seed(seed)) * 2.0)
        before = [p.detach().clone() for p in search.logits.probs()]
        step = search.arch_step(digits.arch_x[:64], digits.arch_y[:64])
        for old, new, pair, updated, options in zip(before, search.logits.probs(), step.pairs, step.updated,
                                                   latency.options_ms):
            if not updated or options[pair.active] == options[pair.other]:
                continue
            fast, slow = sorted(pair.involved, key=lambda i: options[i])
            assert float(new[fast]) > float(old[fast]) and float(new[slow]) < float(old[slow]), (seed, pair)
            checked += 1
    assert checked >= 5


def test_pair_expectation_gradient_has_the_sign_of_the_latency_difference(latency) -> None:  # type: ignore
    # float64: profiled latencies of two ops can differ by 0.2%, below float32's resolution of the product.
    alphas = [torch.tensor([0.0, 3.0, -1.0, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
              for _ in SUPERNET.cells]
    pairs = [PathPair(1, 2), PathPair(0, 3), PathPair(4, 1)]
    latency.expected_pair_ms(alphas, pairs).backward()
    for alpha, pair, options in zip(alphas, pairs, latency.options_ms):
        a, o = pair.involved
        q = torch.softmax(alpha.detach()[[a, o]], 0)
        assert float(alpha.grad[a]) == pytest.approx(float(q[0] * q[1]) * (options[a] - options[o]), rel=1e-4)
        assert float(alpha.grad[o]) == pytest.approx(-float(alpha.grad[a]), rel=1e-4)
        assert all(float(alpha.grad[i]) == 0 for i in range(5) if i not in (a, o))


def test_choices_within_keeps_the_argmax_when_it_meets_the_target() -> None:
    model = LatencyModel(fixed_ms=1.0, options_ms=[[3.0, 1.0, 0.1], [2.0, 0.5]])
    probabilities = [[0.6, 0.3, 0.1], [0.7, 0.3]]
    assert model.choices_within(probabilities, target_ms=6.0) == [0, 0]


def test_choices_within_switches_the_least_certain_block_first() -> None:
    model = LatencyModel(fixed_ms=1.0, options_ms=[[3.0, 1.0, 0.1], [2.0, 0.5]])
    # Block 0 is confident in op 0, block 1 nearly indifferent: saving 1.5 ms in block 1 costs least.
    probabilities = [[0.9, 0.05, 0.05], [0.52, 0.48]]
    choices = model.choices_within(probabilities, target_ms=4.6)
    assert choices == [0, 1]
    assert model.network_ms(choices) <= 4.6


@pytest.mark.parametrize("target", [0.5, 2.0, 3.0, 4.0, 5.5])
def test_choices_within_meets_every_reachable_target(target: float) -> None:
    model = LatencyModel(fixed_ms=0.5, options_ms=[[3.0, 1.0, 0.1], [2.0, 0.5], [1.0, 0.9, 0.2]])
    probabilities = [[0.5, 0.3, 0.2], [0.6, 0.4], [0.2, 0.7, 0.1]]
    choices = model.choices_within(probabilities, target)
    fastest = model.network_ms([2, 1, 2])
    assert model.network_ms(choices) <= max(target, fastest) + 1e-9


def test_search_with_a_target_derives_a_network_the_table_puts_within_it(digits, latency) -> None:  # type: ignore
    search = make_search(SearchConfig(seed=2, loss="mullog", target=1.0), latency)
    target = 0.9 * latency.network_ms(search.logits.argmax())
    search = make_search(SearchConfig(seed=2, loss="mullog", target=target), latency)
    result = search.result(arch_steps=0)
    assert latency.network_ms(result.choices) <= target
    assert result.derived == derive(SUPERNET, result.choices)


def test_path_ranking_counts_ties_against_the_derived_path_and_confidence_reads_the_probabilities() -> None:
    from katib_nas.trial_image.proxyless.search import PathConfidence, PathRanking

    assert PathRanking(0.8, [0.7, 0.8, 0.9, 0.95]).rank == 4
    assert PathRanking(0.8, [0.8, 0.8]).rank == 3
    assert PathRanking(0.99, [0.7, 0.8]).rank == 1
    confidence = PathConfidence.of([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    assert confidence.largest == [0.25, 1.0]
    assert confidence.entropy[0] == pytest.approx(math.log(4)) and confidence.entropy[1] == 0.0
