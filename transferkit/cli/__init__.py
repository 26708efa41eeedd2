"""The ``transferkit`` command line (:mod:`.main`) and the demo it runs (:mod:`.demo`)."""

from .main import main

__all__ = ["main"]
