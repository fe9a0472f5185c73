"""The trainer on real data (scikit-learn digits): it learns, it is deterministic, it stops on divergence."""

from __future__ import annotations

import math

import pytest
import torch

from katib_nas.contract.codec import decode
from katib_nas.trial_image.data import load_dataset, load_digits, split_dataset
from katib_nas.trial_image.model import build_model
from katib_nas.trial_image.trainer import (
    Diverged,
    Tensors,
    TrainConfig,
    batches_per_epoch,
    evaluate,
    evaluate_trained,
    make_optimizer,
    recalibrate_batchnorm,
    total_steps,
    train,
)

ARCH = "in8x8x1-cls10-stem8/w16:c3+s3/w24s2:c3@0"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> Tensors:
    split = split_dataset(load_dataset("digits", None), 0.2)
    return Tensors(*(torch.from_numpy(a) for a in (split.train_x, split.train_y, split.val_x, split.val_y)))


def trained(data: Tensors, config: TrainConfig) -> tuple[torch.nn.Module, list]:  # type: ignore[type-arg]
    torch.manual_seed(config.seed)
    model = build_model(decode(ARCH))
    return model, train(model, data, config)


def test_training_learns_digits_well_above_chance(digits: Tensors) -> None:
    model, results = trained(digits, TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=0))
    assert [r.epoch for r in results] == [1, 2, 3]
    assert results[-1].train_loss < results[0].train_loss
    loss, accuracy = evaluate(model, digits.val_x, digits.val_y)
    assert accuracy > 0.85 and loss < 0.6


def test_same_seed_same_run_other_seed_other_run(digits: Tensors) -> None:
    config = TrainConfig(steps=15, batch_size=32, seed=3)
    first_model, first = trained(digits, config)
    second_model, second = trained(digits, config)
    assert first == second
    for a, b in zip(first_model.state_dict().values(), second_model.state_dict().values()):
        assert torch.equal(a, b)
    _, other = trained(digits, TrainConfig(steps=15, batch_size=32, seed=4))
    assert other[-1].train_loss != first[-1].train_loss


def test_step_budget_cuts_an_epoch_and_spans_epochs(digits: Tensors) -> None:
    count = len(digits.train_y)
    assert batches_per_epoch(count, 64) == math.ceil(count / 64)
    assert batches_per_epoch(129, 64) == 2  # a last batch of one sample is dropped (BatchNorm needs two)
    _, results = trained(digits, TrainConfig(steps=30, batch_size=64))
    assert [(r.epoch, r.steps) for r in results] == [(1, 23), (2, 30)]
    assert total_steps(count, TrainConfig(epochs=2, batch_size=64)) == 46


def test_learning_rate_follows_a_cosine_to_zero_with_nesterov_sgd() -> None:
    model = build_model(decode(ARCH))
    optimizer, schedule = make_optimizer(model, TrainConfig(lr=0.2, weight_decay=1e-3), steps=10)
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 1e-3
    rates = []
    for _ in range(10):
        rates.append(optimizer.lr)
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.2) and rates[5] == pytest.approx(0.1)
    assert optimizer.lr == pytest.approx(0.0, abs=1e-12)


def test_a_huge_learning_rate_diverges_and_is_reported(digits: Tensors) -> None:
    with pytest.raises(Diverged, match="NaN or infinite in epoch 1 between steps"):
        trained(digits, TrainConfig(steps=40, batch_size=64, lr=1e6, check_every=5))


def test_recalibration_sets_running_statistics_to_exact_averages_over_the_images() -> None:
    torch.manual_seed(0)
    model = build_model(decode("in8x8x1-cls10-stem4/w6:c3:mb3e3@r")).train()
    images = torch.randn(300, 1, 8, 8) * 3 + 1
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen: list[torch.Tensor] = []
    handle = norm.register_forward_hook(lambda module, inputs, out: seen.append(inputs[0].detach()))
    recalibrate_batchnorm(model, images, batch_size=64, max_images=250)
    handle.remove()
    inputs = torch.cat(seen)
    assert len(inputs) == 250  # the first 250 images, in batches of 64
    batch_means = [b.mean(dim=(0, 2, 3)) for b in torch.split(inputs, 64)]
    torch.testing.assert_close(norm.running_mean, torch.stack(batch_means).mean(0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.1 and model.training


def test_a_short_run_is_scored_with_recalibrated_statistics() -> None:
    """Sixteen steps on digits: the running averages still mix the first steps' weights; recalibrated, the same
    weights score far better on the validation split."""
    split = split_dataset(load_digits(), 0.2)
    data = Tensors(*(torch.from_numpy(a) for a in (split.train_x, split.train_y, split.val_x, split.val_y)))
    torch.manual_seed(0)
    model = build_model(decode("in8x8x1-cls10-stem8/w16:c3:c3/w32s2:c3:c3"))
    train(model, data, TrainConfig(steps=16, batch_size=64, lr=0.2, seed=0))
    _, stale = evaluate(model, data.val_x, data.val_y)
    _, recalibrated = evaluate_trained(model, data)
    assert recalibrated > stale + 0.1, (stale, recalibrated)
