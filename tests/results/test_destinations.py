"""Where the reports go: USQA_SEND_RESULTS_TO and USQA_RESULTS_DIR as outbox destinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.results.destinations import Peer, destinations, parse_peer
from worker.settings import load_settings

pytestmark = pytest.mark.fast  # no service, no data, no model


def test_both_destinations_are_named_as_the_outbox_names_them(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"USQA_SEND_RESULTS_TO": "PACS@pacs.example.org:104", "USQA_RESULTS_DIR": "r"}
    )
    assert settings.results_dir == Path("r")
    assert destinations(settings) == ["PACS@pacs.example.org:104", f"dir:{Path('r').resolve()}"]
    assert destinations(load_settings(environ={})) == []
    assert parse_peer("ARCHIVE@[::1]:11112") == Peer("ARCHIVE", "::1", 11112)


@pytest.mark.parametrize(
    "value",
    [
        "pacs.example.org:104",
        "PACS@pacs.example.org",
        "PACS@:104",
        "@host:104",
        "A_VERY_LONG_AE_TITLE@host:104",
        "PACS@host:0",
        "PACS@host:http",
    ],
)
def test_a_malformed_pacs_address_is_refused_with_the_expected_form(value: str) -> None:
    with pytest.raises(ConfigError, match="expected AE@host:port"):
        load_settings(environ={"USQA_SEND_RESULTS_TO": value})
