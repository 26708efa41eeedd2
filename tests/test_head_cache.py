"""A registered head is trained on what it sees at inference (issue 12, defect 1).

With the defaults a head gets the map in the feature cache; only a head that declares
``pooled=True`` (it average-pools first) gets pooled vectors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.training.feature_cache import head_takes_pooled

from _synthetic import patterns, tiny_model

FAST = dict(progress=False, augment=False, batch_size=8)


@tk.register_head("test_max_pool_head", replace=True)
def _max_pool_head(in_features, num_classes):
    """Global max pool, then linear: registered with the defaults."""
    return nn.Sequential(tk.heads.GlobalPool("max"), nn.Linear(in_features, num_classes))


def _probe(cache: bool):
    X, y = patterns(24, size=16)
    torch.manual_seed(0)
    model = tiny_model(head="test_max_pool_head")
    h = tk.finetune(model, (X, y), epochs=3, strategy="linear_probe", optimizer="sgd", lr=0.1,
                    cache_features=cache, seed=0, **FAST)
    return model, h, X


def test_cached_probe_equals_uncached_for_a_max_pool_head_with_default_registration():
    cached, h_cached, X = _probe(True)
    plain, h_plain, _ = _probe(False)
    assert h_cached["cached"] == [True] * 3 and h_plain["cached"] == [False] * 3
    for a, b in zip(cached.head.parameters(), plain.head.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    cached.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(cached(X), plain(X), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["linear", "mlp", "cosine"])
def test_built_in_average_pooling_heads_declare_it(name):
    assert tk.get_head_spec(name).pooled
    assert head_takes_pooled(tiny_model(head=name))
    assert not head_takes_pooled(tiny_model(head=name, pool="max"))  # its pool option says so


def test_the_default_registration_keeps_the_map():
    assert not tk.get_head_spec("test_max_pool_head").pooled
    assert tk.get_head_spec("test_max_pool_head").needs_map
    assert not tk.get_head_spec("vgg_classifier").pooled
    assert not head_takes_pooled(tiny_model(head="test_max_pool_head"))


def test_needs_map_spellings():
    @tk.register_head("test_old_spelling", needs_map=False, replace=True)
    def old(in_features, num_classes):
        return nn.Sequential(tk.heads.GlobalPool(), nn.Linear(in_features, num_classes))

    assert tk.get_head_spec("test_old_spelling").pooled
    with pytest.raises(ValueError, match="needs_map=True contradicts pooled=True"):
        tk.register_head("test_contradiction", needs_map=True, pooled=True)
