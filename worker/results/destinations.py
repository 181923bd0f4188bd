"""Where the structured reports go: the destinations of the settings, as the outbox names
them (``AE@host:port`` for a PACS, ``dir:FOLDER`` for the results folder). Light: the
scoring path imports it to queue a report for each destination."""

from __future__ import annotations

from dataclasses import dataclass

from worker.settings import Settings

__all__ = ["DIR_PREFIX", "Peer", "destinations", "parse_peer"]

DIR_PREFIX = "dir:"


@dataclass(frozen=True)
class Peer:
    """A PACS to C-STORE to."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_peer(text: str) -> Peer:
    """``AE@host:port`` (checked by the settings) as a :class:`Peer`."""
    ae, _, address = text.partition("@")
    host, _, port = address.rpartition(":")
    return Peer(ae.strip(), host.strip("[]"), int(port))


def destinations(settings: Settings) -> list[str]:
    """The outbox destinations of ``settings``: the PACS, then the folder (none: [])."""
    found: list[str] = []
    if settings.send_results_to:
        found.append(str(parse_peer(settings.send_results_to)))
    if settings.results_dir is not None:
        found.append(f"{DIR_PREFIX}{settings.results_dir.resolve()}")
    return found
