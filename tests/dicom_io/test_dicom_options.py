"""ReadOptions: defaults in step with the settings, built from them, and validated."""

from __future__ import annotations

import pytest

from dicom_io import ReadOptions
from worker.errors import ConfigError
from worker.settings import Settings, load_settings


def test_defaults_match_the_settings() -> None:
    assert ReadOptions.from_settings(Settings()) == ReadOptions()


def test_from_settings_reads_the_environment() -> None:
    settings = load_settings(
        environ={
            "USQA_MAX_PIXELS": "1000",
            "USQA_MAX_FRAMES": "7",
            "USQA_MAX_SAMPLES": "9000",
            "USQA_FRAMES_TO_SCORE": "0",
            "USQA_MODALITIES": "us, ct",
            "USQA_PSEUDONYM_SALT": "salt-of-16-bytes-or-more",
            "USQA_CROP": "0",
        }
    )
    options = ReadOptions.from_settings(settings)
    assert options == ReadOptions(
        max_pixels=1000,
        max_frames=7,
        max_samples=9000,
        frames_to_score=0,
        modalities=("US", "CT"),
        pseudonym_salt="salt-of-16-bytes-or-more",
        crop=False,
    )


@pytest.mark.parametrize("bad", [{"max_pixels": 0}, {"max_frames": -1}, {"frames_to_score": -2}])
def test_invalid_options_are_a_config_error(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        ReadOptions(**bad)  # type: ignore[arg-type]
