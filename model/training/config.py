"""The training options (:class:`TrainConfig`) and the part of them a resumed run must match."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ConfigError

__all__ = ["TrainConfig", "config_key"]


@dataclass
class TrainConfig:
    """Training options. Defaults are the published hyper-parameters."""

    data: Path
    splits: Path
    out: Path
    protocol: str = "graded"
    init: str = "none"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (per step, after a linear warm-up)
    warmup_epochs: float = 0.0
    augment: str = "paper"  # paper: flip + rotation + scale | flip | none
    crop: int = 224
    crop_align: int = 8  # crop corners on the 8-pixel JPEG grid, as at inference
    size: int = 256
    target: str = "raw"  # raw: regress the label | unit: regress label / 100
    bf16: bool = False
    seed: int = 0
    threads: int = 2
    limit: int = 0  # use only the first N images of each split (tests, smoke runs)
    val_levels: int = 3
    bn_recal: int = 0  # batches of fresh training data to re-estimate BatchNorm statistics
    state: Path | None = None
    resume: bool = False
    half: bool = False
    stop_after: int = 0  # train at most N epochs in this invocation (time-sliced jobs)
    nonus_share: float = 0.1  # defects: extra non-ultrasound items, share of the epoch
    phantom_share: float = 0.0  # defects: synthetic other-organ source images, share of sources
    dual_share: float = 0.0  # defects: versions shown as a scanner's dual screen
    defect_pos_weight: float = 1.0  # defects: weight of a present defect in its BCE term
    low_score_weight: float = 0.0  # defects: extra score-loss weight as the label falls to 0
    ladder_share: float = 0.0  # defects: degraded items drawn with a sibling at another severity
    rank_weight: float = 0.0  # defects: weight of the ranking term over those siblings
    rank_margin: float = 0.5  # defects: score gap asked of siblings, times their label gap
    ladder_rungs: int = 2  # defects: versions of the defect per ladder (first + siblings)
    ladder_clean: bool = False  # defects: a ladder also holds its clean version (label 100)
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def state_path(self) -> Path:
        return self.state or self.out.with_name(self.out.name + ".state")

    def check(self) -> None:
        choices = {
            "optimizer": ("adam", "adamw"),
            "schedule": ("constant", "cosine"),
            "augment": ("paper", "flip", "none"),
            "target": ("raw", "unit"),
            "protocol": ("paper", "graded", "defects", "reviewed"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} {getattr(self, name)!r}: expected one of {allowed}")
        if not 16 <= self.crop <= self.size:
            raise ConfigError(f"--crop {self.crop}: expected 16..{self.size} (the --size)")
        if self.bn_recal < 0:
            raise ConfigError(f"--bn-recal {self.bn_recal}: expected 0 (off) or more batches")
        if self.crop_align < 1:
            raise ConfigError(f"--crop-align {self.crop_align}: expected 1 or more")
        if not 0.0 <= self.nonus_share < 1.0:
            raise ConfigError(f"--nonus-share {self.nonus_share}: expected 0 <= share < 1")
        if not 0.0 <= self.phantom_share < 1.0:
            raise ConfigError(f"--phantom-share {self.phantom_share}: expected 0 <= share < 1")
        if not 0.0 <= self.dual_share <= 1.0:
            raise ConfigError(f"--dual-share {self.dual_share}: expected 0 <= share <= 1")
        if self.low_score_weight < 0:
            raise ConfigError(f"--low-score-weight {self.low_score_weight}: expected >= 0")
        if not 0.0 <= self.ladder_share <= 1.0:
            raise ConfigError(f"--ladder-share {self.ladder_share}: expected 0 <= share <= 1")
        if self.rank_weight < 0:
            raise ConfigError(f"--rank-weight {self.rank_weight}: expected >= 0")
        if not 0.0 < self.rank_margin <= 1.0:
            raise ConfigError(f"--rank-margin {self.rank_margin}: expected 0 < margin <= 1")
        if not 2 <= self.ladder_rungs <= 6:
            raise ConfigError(f"--ladder-rungs {self.ladder_rungs}: expected 2 to 6")
        if self.rank_weight > 0 and self.ladder_share == 0:
            raise ConfigError("--rank-weight needs --ladder-share above 0 (pairs to rank)")
        if self.defect_pos_weight <= 0:
            raise ConfigError(f"--defect-pos-weight {self.defect_pos_weight}: expected > 0")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("--epochs, --batch-size and --lr must be positive")


def config_key(cfg: TrainConfig) -> dict[str, Any]:
    """The options that must match for ``--resume`` (paths and run control excluded;
    ``bn_recal`` changes statistics only, never the trained weights, so a run may be
    resumed with it switched on)."""
    skip = {
        "bn_recal",
        "data",
        "splits",
        "out",
        "state",
        "resume",
        "command",
        "extra",
        "threads",
        "half",
        "stop_after",
    }
    return {k: v for k, v in asdict(cfg).items() if k not in skip}
