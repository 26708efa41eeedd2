"""Data in: sources (tensors, datasets, image folders, loaders), the preprocessing built from a
backbone's ``data_config``, and the offline datasets (:mod:`transferkit.datasets`)."""

from .sources import Source, as_source, iter_eval_batches, stratified_split

__all__ = ["Source", "as_source", "iter_eval_batches", "stratified_split"]
