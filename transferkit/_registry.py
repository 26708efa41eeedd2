"""One small generic registry: a decorator fills a dict, listing filters with wildcards.

Backbones and heads are two instances of :class:`Registry`. Registering has no side effects:
it stores a builder and its metadata, it never builds a model or downloads anything.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from .errors import DuplicateNameError, UnknownNameError

__all__ = ["Registry", "check_name"]

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[a-z0-9_.\-]+)?$")


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is a lower_snake registry name, else raise a clear error."""
    if not isinstance(name, str):
        raise TypeError(f"register_{kind}: the name must be a str, got {type(name).__name__}.")
    if not _NAME.match(name):
        raise ValueError(
            f"register_{kind}: {name!r} is not a valid name; use lower_snake_case "
            f"(letters, digits and '_', starting with a letter), for example 'my_{kind}'."
        )
    return name


def _as_patterns(patterns: str | Iterable[str] | None) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    return list(patterns)


class Registry(Generic[T]):
    """A name -> entry mapping with duplicate checks, wildcard listing and close-match hints.

    Args:
        kind: what the entries are ("backbone", "head"), used in messages.
        lister: the public function that lists the entries, named in "unknown name" errors.
    """

    def __init__(self, kind: str, lister: str) -> None:
        self.kind = kind
        self.lister = lister
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Store ``entry`` under ``name``; a taken name raises unless ``replace=True``."""
        check_name(self.kind, name)
        if name in self._entries and not replace:
            raise DuplicateNameError(
                f"A {self.kind} named {name!r} is already registered. Pass replace=True to "
                f"register_{self.kind} to replace it on purpose, or choose another name."
            )
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (raises :class:`UnknownNameError` when it is not registered)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The entry registered as ``name``; a miss names the closest registered names."""
        if not isinstance(name, str):
            raise TypeError(f"A {self.kind} name must be a str, got {type(name).__name__}.")
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
        if not close:
            close = sorted(n for n in self._entries if n.startswith(name[:3]))[:3]
        hint = ""
        if close:
            quoted = [repr(c) for c in close]
            hint = " Did you mean " + (
                quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
            ) + "?"
        return f"Unknown {self.kind} {name!r}.{hint} See transferkit.{self.lister}()."

    def names(
        self,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
    ) -> list[str]:
        """Sorted names matching any ``include`` wildcard and no ``exclude`` wildcard."""
        inc, exc = _as_patterns(include), _as_patterns(exclude)
        out = []
        for name in self._entries:
            if inc and not any(fnmatch.fnmatchcase(name, p) for p in inc):
                continue
            if any(fnmatch.fnmatchcase(name, p) for p in exc):
                continue
            out.append(name)
        return sorted(out)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def decorator(self, name: str, make_entry: Callable[[Callable], T], replace: bool):
        """A decorator that registers ``make_entry(fn)`` and returns ``fn`` unchanged."""
        check_name(self.kind, name)

        def wrap(fn: Callable) -> Callable:
            self.add(name, make_entry(fn), replace=replace)
            return fn

        return wrap
