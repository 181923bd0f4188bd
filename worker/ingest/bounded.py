"""A mapping that keeps at most ``limit`` entries, dropping the least recently used."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import TypeVar

__all__ = ["Bounded"]

K = TypeVar("K")
V = TypeVar("V")


class Bounded(MutableMapping[K, V]):
    """A least-recently-used cache: reading or writing a key makes it the newest; past
    ``limit`` entries the oldest goes. For the ingester's memory of files it has seen."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._data: OrderedDict[K, V] = OrderedDict()
        self.dropped = 0

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.limit:
            self._data.popitem(last=False)
            self.dropped += 1

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
