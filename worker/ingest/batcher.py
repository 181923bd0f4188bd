"""The batcher: scan ids in, batches of ids out to the transport (broker or runner)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from dicom_io.messages import first_line

__all__ = ["Batcher"]

log = logging.getLogger(__name__)

_UNSENT_LIMIT = 100_000


class Batcher:
    """Collects scan ids and sends them in batches of ``size``, or sooner once the first
    id has waited ``linger`` seconds. A batch that cannot be sent (broker down) is kept
    and tried again; the ledger still has it as ``queued`` whatever happens."""

    def __init__(
        self,
        send: Callable[[list[int]], None],
        size: int,
        linger: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.size = max(1, size)
        self.linger = max(0.0, linger)
        self.clock = clock
        self.buffer: list[int] = []
        self.first_at: float | None = None
        self.unsent: list[list[int]] = []
        self.retry_at = 0.0
        self.sent = 0

    def add(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        if not self.buffer:
            self.first_at = self.clock()
        self.buffer.extend(ids)
        while len(self.buffer) >= self.size:
            chunk, self.buffer = self.buffer[: self.size], self.buffer[self.size :]
            self._send(chunk)
        if not self.buffer:
            self.first_at = None

    def flush(self, force: bool = False) -> None:
        """Send the partial batch if it has lingered long enough (or ``force``), and retry
        batches that could not be sent before."""
        now = self.clock()
        if self.buffer and (
            force or (self.first_at is not None and now - self.first_at >= self.linger)
        ):
            chunk, self.buffer, self.first_at = self.buffer, [], None
            self._send(chunk)
        if self.unsent and now >= self.retry_at:
            pending, self.unsent = self.unsent, []
            for chunk in pending:
                self._send(chunk)

    @property
    def empty(self) -> bool:
        return not self.buffer and not self.unsent

    def _send(self, chunk: list[int]) -> None:
        try:
            self.send(chunk)
            self.sent += len(chunk)
        except Exception as exc:  # the broker is away: keep the ids, they are in the ledger
            if not self.unsent:
                log.warning(
                    "could not queue %d scan(s) (%s); retrying, and the ledger keeps them queued",
                    len(chunk),
                    first_line(exc, kind=False),
                )
            self.unsent.append(chunk)
            self.retry_at = self.clock() + 2.0
            if sum(len(c) for c in self.unsent) > _UNSENT_LIMIT:
                self.unsent.pop(0)  # the reconciler re-sends these from the ledger
