"""Shared fixtures. Real services, never mocks: a service that is not reachable fails the
test (CI sets USQA_TEST_REQUIRE_SERVICES=1 and starts them in .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BUSI = SHARED / "datasets" / "busi"


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    """The BUSI copy beside the checkout (tests and training only; never the product)."""
    if not (BUSI / "splits.csv").is_file():
        pytest.fail(f"BUSI data not found at {BUSI}: CI runs with ../shared beside the clone")
    return BUSI


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ.get(
        "USQA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("USQA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str):  # type: ignore[no-untyped-def]
    """A factory of fresh, empty PostgreSQL namespaces on the test server (one per call): a
    new schema, made the connection's search_path through the URL, so every table, view and
    alembic_version of a test lives apart. All are dropped at the end of the session.
    Returns their SQLAlchemy URLs (usable by subprocesses too)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    made: list[str] = []

    def make() -> str:
        name = f"usqa_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    yield make
    from db.session import dispose_engines

    dispose_engines()
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A usqa checkpoint with random (seeded) weights, for pipeline tests that do not care
    about score values."""
    import torch

    from model import Preprocess, build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    save_checkpoint(
        path,
        build_model(init="none"),
        {"target_scale": 100.0, "preprocess": Preprocess().to_dict()},
    )
    return path


def head_checkpoint(
    path: Path, defects: dict[str, float] | None = None, gate: float = -8.0, score: float = 0.6
) -> Path:
    """A checkpoint with every output whose answers do not depend on the image: the score
    ``score`` x 100, each defect's logit from ``defects`` (others -8: probability 0.0003) and
    the not-ultrasound logit ``gate``. For pipeline tests of the defect and gate paths."""
    import torch

    from model import Preprocess, build_model, save_checkpoint
    from model.network import OUTPUTS

    torch.manual_seed(0)
    net = build_model(init="none", outputs=OUTPUTS)
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.fill_(-8.0)
        net.fc.bias[0] = score
        for name, logit in (defects or {}).items():
            net.fc.bias[OUTPUTS.index(name)] = logit
        net.fc.bias[OUTPUTS.index("not_ultrasound")] = gate
    meta = {"target_scale": 100.0, "preprocess": Preprocess().to_dict(), "outputs": list(OUTPUTS)}
    save_checkpoint(path, net, meta)
    return path


@pytest.fixture(scope="session")
def shadowing_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every frame scores 60 and shows shadowing (p 0.95) and blur (p 0.73)."""
    path = tmp_path_factory.mktemp("weights") / "shadowing.pt"
    return head_checkpoint(path, {"shadowing": 3.0, "blur": 1.0})


@pytest.fixture(scope="session")
def not_ultrasound_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every frame is judged not ultrasound (p 0.98)."""
    return head_checkpoint(tmp_path_factory.mktemp("weights") / "gate.pt", gate=4.0)
