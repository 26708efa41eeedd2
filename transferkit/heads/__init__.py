"""Head registry and the built-in heads (one file each)."""

from ._api import HEADS, HeadSpec, build_head, get_head_spec, list_heads, register_head
from ._pool import GlobalPool
from . import cosine, linear, mlp, vgg_classifier  # noqa: F401  (register the built-ins)
from . import deeplabv3, dense_linear, fcn, unet  # noqa: F401  (dense heads)

__all__ = [
    "HEADS", "HeadSpec", "GlobalPool", "build_head", "get_head_spec", "list_heads",
    "register_head",
]
