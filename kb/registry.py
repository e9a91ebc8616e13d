"""One registry pattern for rule kinds, encoders, classifiers and recommenders.

Duplicate names raise; unknown names raise with the list of known ones; entries may be registered lazily as a
``"module:attribute"`` string so heavy modules (torch, faiss) load only when picked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from kb.errors import UnknownEntityError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T | str] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, item: T | str) -> T | str: ...

    def register(self, name: str, item: T | str | None = None) -> Callable[[T], T] | T | str:
        """``registry.register("name", obj)``, ``registry.register("name", "pkg.mod:attr")`` or as a decorator."""
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        if item is None:

            def deco(obj: T) -> T:
                self._items[name] = obj
                return obj

            return deco
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownEntityError(self.what, name, sorted(self._items))
        item = self._items[name]
        if isinstance(item, str):
            module, _, attr = item.partition(":")
            item = getattr(importlib.import_module(module), attr)
            self._items[name] = item
        return item  # type: ignore[return-value]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
