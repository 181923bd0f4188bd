from pathlib import Path

import pytest

from worker.cli import main
from worker.errors import ConfigError
from worker.settings import Settings, load_settings, setting_docs

pytestmark = pytest.mark.fast  # no service, no data, no model


def test_defaults_without_environment() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.database_url == "sqlite:///usqa.db"
    assert s.broker_url is None
    assert s.modalities == ("US",)


def test_environment_is_parsed_to_field_types() -> None:
    s = load_settings(
        environ={
            "USQA_MAX_FRAMES": "12",
            "USQA_GOOD_THRESHOLD": "85.5",
            "USQA_POLLING": "yes",
            "USQA_MODALITIES": "US, OT",
            "USQA_WEIGHTS": "/tmp/w.pt",
            "USQA_BROKER_URL": "",
        }
    )
    assert s.max_frames == 12
    assert s.good_threshold == 85.5
    assert s.polling is True
    assert s.modalities == ("US", "OT")
    assert s.weights == Path("/tmp/w.pt")
    assert s.broker_url is None


def test_cli_overrides_beat_environment() -> None:
    s = load_settings({"max_frames": 3, "broker_url": None}, environ={"USQA_MAX_FRAMES": "12"})
    assert s.max_frames == 3


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"USQA_MAX_FRAMES": "many"}, "USQA_MAX_FRAMES"),
        ({"USQA_POLLING": "perhaps"}, "USQA_POLLING"),
        ({"USQA_AGGREGATE": "median"}, "USQA_AGGREGATE"),
        ({"USQA_GOOD_THRESHOLD": "40"}, "USQA_GOOD_THRESHOLD"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(environ=env)


def test_every_setting_is_documented() -> None:
    docs = setting_docs()
    assert len(docs) == len(Settings.__dataclass_fields__)
    assert all(var.startswith("USQA_") and help_ for var, _, help_ in docs)


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0
