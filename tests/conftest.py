"""Test set-up: kernels run through Triton's CPU interpreter unless a GPU is present.

``@triton.jit`` reads TRITON_INTERPRET when the kernels are imported, so it is set here, before any
test module imports tritongru. Every kernel output is poisoned with NaN before a launch, so an
element a kernel fails to write fails the comparison instead of matching leftover memory.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import tritongru.kernels.launch as launch  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu")

if DEVICE.type == "cuda":
    # nn.GRU, the comparison, must run its fp32 products in fp32, not TF32 (cuDNN's default for
    # RNNs); the kernels follow torch.backends.cuda.matmul.allow_tf32, which defaults to False.
    torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    monkeypatch.setattr(launch, "POISON_OUTPUTS", True)


@pytest.fixture
def device() -> torch.device:
    return DEVICE


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
