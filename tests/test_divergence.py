"""``first_non_finite`` and ``watched_tensors``: the check after every epoch and before every
checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transferkit.training.divergence import first_non_finite


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


@pytest.mark.parametrize("where", ["0.weight", "1.bias", "1.running_var"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_finds_the_first_non_finite_tensor(where, value):
    model = _model()
    model(torch.zeros(2, 3, 8, 8))  # materialise the lazy layer
    assert first_non_finite(model) is None
    dict([*model.named_parameters(), *model.named_buffers()])[where].data.view(-1)[1] = value
    assert first_non_finite(model) == where


def test_finite_values_whose_sum_overflows_are_finite():
    # the fast path sums each tensor in float32: these sums overflow to inf and -inf, and the
    # exact test must then clear them
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3e38, 3e38, 1.0, 1.0], [-3e38, -3e38, 1.0, 1.0]]))
    assert first_non_finite(model) is None
    with torch.no_grad():
        model.weight[1, 3] = math.nan
    assert first_non_finite(model) == "weight"


def test_frozen_parameters_are_skipped_buffers_are_not():
    model = _model()
    model(torch.zeros(2, 3, 8, 8))
    model[0].weight.requires_grad_(False)
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = math.nan
    assert first_non_finite(model) is None  # no step writes a frozen weight
    model[1].running_mean[0] = math.inf
    assert first_non_finite(model) == "1.running_mean"
    model[1].eval()  # an eval-mode BatchNorm does not update its statistics: not checked
    assert first_non_finite(model) is None
    model[1].train()
    assert first_non_finite(model) == "1.running_mean"


def test_half_precision_weights():
    model = nn.Linear(3, 2).to(torch.bfloat16)
    assert first_non_finite(model) is None
    with torch.no_grad():
        model.bias[0] = math.inf
    assert first_non_finite(model) == "bias"


def test_a_watched_list_taken_once_sees_later_values():
    """The trainer takes watched_tensors once per phase: the list holds the tensors
    themselves, so a value written after it was taken is found."""
    from transferkit.training.divergence import watched_tensors

    model = _model()
    model(torch.zeros(2, 3, 8, 8))
    model[0].requires_grad_(False)
    model[1].eval()
    watched = watched_tensors(model)
    # the frozen conv and the eval-mode BatchNorm's statistics are out, its affine weights in
    assert [n for n, _ in watched] == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert first_non_finite(watched) is None
    with torch.no_grad():
        model[3].bias[1] = math.nan
    assert first_non_finite(watched) == "3.bias"
