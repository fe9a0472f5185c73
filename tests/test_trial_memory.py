"""What keeps a trial's memory small changes none of its numbers: the fused BatchNorm + activation, the
optimisers written without torch.optim, the evaluation batch; and a trial process loads no compiler."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from katib_nas.contract.codec import decode
from katib_nas.trial_image import batchnorm_act
from katib_nas.trial_image.allocator import HUGE_PAGE_BYTES, TUNABLES, tuned_environment
from katib_nas.trial_image.batchnorm_act import Layers, recomputing
from katib_nas.trial_image.model import build_model
from katib_nas.trial_image.optimizers import Adam, CosineSchedule, NesterovSGD

torch.set_num_threads(1)
#: MBConv blocks with and without expansion, a residual, a stage entry (1x1 conv, ReLU, max pool), a branch
#: cell with a skip input: every place a BatchNorm meets an activation.
ARCH = "in12x12x1-cls5-stem8/w8:mb3e3@r:mb5e1+c3/w16s2:mb3e6@r:c1+s3+mp3@1"


def batch(seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 12, 12, generator=generator).contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, 5, (size,), generator=generator)


def steps(model: nn.Module, optimizer: NesterovSGD | torch.optim.Optimizer, count: int = 4) -> list[float]:
    losses = []
    for step in range(count):
        images, labels = batch(step)
        with recomputing():
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def test_fused_batchnorm_activation_trains_bit_for_bit_like_the_separate_modules(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    torch.manual_seed(0)
    fused = build_model(decode(ARCH)).to(memory_format=torch.channels_last).train()
    separate = copy.deepcopy(fused)
    fused_losses = steps(fused, NesterovSGD(fused.parameters(), 0.1, 0.9, 3e-4))
    monkeypatch.setattr(Layers, "forward", nn.Sequential.forward)
    separate_losses = steps(separate, NesterovSGD(separate.parameters(), 0.1, 0.9, 3e-4))
    assert fused_losses == separate_losses
    for (name, a), b in zip(fused.state_dict().items(), separate.state_dict().values()):
        assert torch.equal(a, b), name  # weights, running statistics and batch counts


def saved_bytes(model: nn.Module) -> int:
    """Bytes of the distinct tensors autograd keeps for backward (recipes count nothing)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> object:
        packed = batchnorm_act._pack(tensor)
        if isinstance(packed, torch.Tensor):
            storages[packed.untyped_storage().data_ptr()] = packed.untyped_storage().nbytes()
        return packed

    images, labels = batch(0, size=64)
    with torch.autograd.graph.saved_tensors_hooks(pack, batchnorm_act._unpack):
        F.cross_entropy(model(images), labels).backward()
    return sum(storages.values())


def test_an_mbconv_network_keeps_less_than_half_as_much_for_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model(decode("in28x28x1-cls10-stem16/w16:mb5e6@r:mb3e6@r")).to(
        memory_format=torch.channels_last).train()
    fused = saved_bytes(model)
    monkeypatch.setattr(Layers, "forward", nn.Sequential.forward)
    assert fused < 0.5 * saved_bytes(model)


def test_evaluation_mode_and_tracing_see_the_plain_modules() -> None:
    model = build_model(decode(ARCH)).eval()
    traced = torch.jit.trace(model, batch(0)[0])
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::batch_norm" in kinds and "prim::PythonOp" not in kinds


def sgd_pair(model: nn.Module) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=3e-4)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=7)


def test_nesterov_sgd_and_its_cosine_schedule_are_torch_optims_bit_for_bit() -> None:
    torch.manual_seed(0)
    ours_model = build_model(decode(ARCH)).train()
    torch_model = copy.deepcopy(ours_model)
    ours = NesterovSGD(ours_model.parameters(), 0.1, 0.9, 3e-4)
    schedule = CosineSchedule(ours, 7)
    reference, reference_schedule = sgd_pair(torch_model)
    for step in range(9):  # past T_max: the schedule's other branch
        for model in (ours_model, torch_model):
            images, labels = batch(step)
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            if step % 3 == 1:  # a parameter without a gradient is left alone (a supernet's unused path)
                next(model.parameters()).grad = None
        ours.step()
        schedule.step()
        reference.step()
        reference_schedule.step()
        assert ours.lr == reference.param_groups[0]["lr"]
    for a, b in zip(ours_model.state_dict().values(), torch_model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_written_with_torch_optim_resumes_with_the_same_steps() -> None:
    torch.manual_seed(0)
    first = build_model(decode(ARCH)).train()
    reference, reference_schedule = sgd_pair(first)
    steps(first, reference, 3)
    for _ in range(3):
        reference_schedule.step()
    second = copy.deepcopy(first)
    ours = NesterovSGD(second.parameters(), 0.1, 0.9, 3e-4)
    schedule = CosineSchedule(ours, 7)
    ours.load_state_dict(reference.state_dict())
    schedule.load_state_dict(reference_schedule.state_dict())
    for step in range(3, 6):
        for model, optimizer, sched in ((first, reference, reference_schedule), (second, ours, schedule)):
            images, labels = batch(step)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            sched.step()
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_adam_is_torch_optims_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(4, generator=generator) for _ in range(3)]
    ours_params = [nn.Parameter(t.clone()) for t in start]
    torch_params = [nn.Parameter(t.clone()) for t in start]
    ours = Adam(ours_params, lr=0.006, betas=(0.0, 0.999), eps=1e-8)
    reference = torch.optim.Adam(torch_params, lr=0.006, betas=(0.0, 0.999), eps=1e-8)
    for step in range(6):
        grads = [torch.randn(4, generator=generator) for _ in start]
        for params in (ours_params, torch_params):
            for index, (param, grad) in enumerate(zip(params, grads)):
                param.grad = None if (step + index) % 4 == 0 else grad.clone()
        ours.step()
        reference.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_params, torch_params))


def test_a_trial_process_loads_no_compiler() -> None:
    code = ("import sys\n"
            "from katib_nas.trial_image.trial import TrialOptions, run_trial\n"
            "run_trial(TrialOptions(architecture='in8x8x1-cls10-stem4/w8:mb3e3@r', dataset='digits', steps=3, "
            "threads=1))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'sympy'))), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("environ, hugepages, expected", [
    ({}, "always [madvise] never", TUNABLES),
    ({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=2000"}, "[always] madvise never",
     f"glibc.rtld.optional_static_tls=2000:{TUNABLES}"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "always [madvise] never", None),  # the user's malloc settings
    ({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}, "always [madvise] never", None),  # another allocator
    ({}, "always madvise [never]", None),  # without huge pages every new mapping would cost twice the CPU
    ({}, None, None),
])
def test_training_processes_tune_glibc_malloc_unless_told_otherwise(tmp_path: Path, environ: dict[str, str],
                                                                    hugepages: str | None, expected: str | None
                                                                    ) -> None:
    setting = tmp_path / "enabled"
    if hugepages is not None:
        setting.write_text(hugepages + "\n")
    tuned = tuned_environment(environ, setting)
    assert (tuned or {}).get("GLIBC_TUNABLES") == expected


#: The kernel's transparent huge page size.
HUGE_PAGE_SIZE = Path("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")


def test_every_buffer_malloc_maps_on_its_own_can_be_a_huge_page() -> None:
    """A mapping smaller than a huge page is faulted in 4 KiB pages each time it is made anew: below the
    threshold of one huge page, a 2-thread trial of envelope cells (1.6 MB branch buffers) ran 1.6 times slower."""
    if not HUGE_PAGE_SIZE.is_file():
        pytest.skip("the kernel has no transparent huge pages")
    threshold = int(TUNABLES.split("glibc.malloc.mmap_threshold=")[1].split(":")[0])
    assert threshold == HUGE_PAGE_BYTES >= int(HUGE_PAGE_SIZE.read_text())


def test_katib_nas_trial_starts_again_with_the_tuned_malloc() -> None:
    if tuned_environment({}) is None:
        pytest.skip("no transparent huge pages here: the trial keeps the default malloc")
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "trial", "--architecture=in8x8x1-cls10-stem4/w8:c3",
                           "--dataset=digits", "--steps=2", "--threads=1"], capture_output=True, text=True,
                          timeout=300, env=environ)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"memory from GLIBC_TUNABLES={TUNABLES}" in done.stderr
