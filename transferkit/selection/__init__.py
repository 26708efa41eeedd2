"""Choosing a backbone before fine-tuning: transferability scores and :func:`rank_backbones`."""

from . import transferability
from .rank_backbones import METRICS, Ranking, rank_backbones

__all__ = ["METRICS", "Ranking", "rank_backbones", "transferability"]
