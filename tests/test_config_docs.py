"""FinetuneConfig: every option has its line in the class docstring (issue 12)."""

import dataclasses
import re

import transferkit as tk
from transferkit.training.config import FinetuneConfig


def test_every_finetune_option_is_documented():
    attributes = FinetuneConfig.__doc__.split("Attributes:", 1)[1]
    documented = set()
    for line in attributes.splitlines():
        m = re.match(r"\s{8}([a-z_][a-z0-9_, ]*):", line)  # "name:" or "a, b, c:" entries
        if m:
            documented.update(n.strip() for n in m.group(1).split(","))
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert fields - documented == set(), "options without a docstring line"
    assert documented - fields == set(), "docstring lines for options that do not exist"


def test_finetune_config_is_public():
    assert tk.FinetuneConfig is FinetuneConfig
