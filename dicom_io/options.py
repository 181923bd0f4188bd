"""What :func:`dicom_io.read` accepts: input limits, frame selection, policy and privacy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from worker.errors import ConfigError

__all__ = ["ReadOptions", "ReadSettings"]


class ReadSettings(Protocol):
    """The settings :meth:`ReadOptions.from_settings` reads (``worker.settings.Settings``
    has them)."""

    @property
    def max_pixels(self) -> int: ...
    @property
    def max_frames(self) -> int: ...
    @property
    def max_samples(self) -> int: ...
    @property
    def frames_to_score(self) -> int: ...
    @property
    def modalities(self) -> tuple[str, ...]: ...
    @property
    def pseudonym_salt(self) -> str | None: ...
    @property
    def crop(self) -> bool: ...


@dataclass(frozen=True)
class ReadOptions:
    """Options for reading one scan. The defaults match :class:`worker.settings.Settings`.

    ``max_pixels`` bounds one frame (rows x columns), ``max_frames`` the frame count and
    ``max_samples`` the whole image (rows x columns x frames x samples per pixel); all are
    checked from the header, before any pixel is decoded. ``frames_to_score`` = 0 selects
    every frame, N selects N evenly spaced frames. ``modalities`` is the DICOM modality
    allow-list (PNG/JPEG always count as ultrasound). ``pseudonym_salt`` keys the HMAC that
    pseudonymises patient ids and operator names; without it they are not recorded.
    ``keep_identifiers`` (for a reader that must not hold the salt: the decoder child)
    leaves both out and returns their clean texts for the caller's
    :func:`dicom_io.metadata.pseudonymise`. ``crop`` turns the B-mode crop on or off.
    """

    max_pixels: int = 100_000_000
    max_frames: int = 5000
    max_samples: int = 2_000_000_000
    frames_to_score: int = 16
    modalities: tuple[str, ...] = ("US",)
    pseudonym_salt: str | None = None
    crop: bool = True
    keep_identifiers: bool = False

    def __post_init__(self) -> None:
        if min(self.max_pixels, self.max_frames, self.max_samples) <= 0:
            raise ConfigError("max_pixels, max_frames and max_samples must be > 0")
        if self.frames_to_score < 0:
            raise ConfigError("frames_to_score must be 0 (all frames) or a positive number")
        # Normalise the allow-list: upper case, no blanks, a tuple even if a list was given.
        cleaned = tuple(m.strip().upper() for m in self.modalities if m and m.strip())
        object.__setattr__(self, "modalities", cleaned)

    @classmethod
    def from_settings(cls, settings: ReadSettings) -> ReadOptions:
        """Build from the settings (``worker.settings.Settings``)."""
        return cls(
            max_pixels=int(settings.max_pixels),
            max_frames=int(settings.max_frames),
            max_samples=int(settings.max_samples),
            frames_to_score=int(settings.frames_to_score),
            modalities=tuple(settings.modalities),
            pseudonym_salt=settings.pseudonym_salt,
            crop=bool(settings.crop),
        )
