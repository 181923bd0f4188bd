"""worker/ops/health.py and `usqa health`: heartbeat freshness, stuck tasks, broker reachability
(real Redis; an unused port on 127.0.0.1 for the unreachable case)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from worker.cli import main
from worker.ops.health import Beat, HeartbeatFile, check_broker, check_heartbeat, read_beat
from worker.settings import load_settings


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_beat(path: Path, **overrides: object) -> None:
    beat = {
        "role": "worker",
        "pid": 123,
        "hostname": "h",
        "time": time.time(),
        "interval": 10.0,
        "busy_since": None,
        "busy_limit": None,
        "scans_done": 4,
    }
    beat.update(overrides)
    path.write_text(json.dumps(beat), encoding="utf-8")


def test_a_fresh_idle_beat_is_healthy(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    HeartbeatFile(path, "worker", interval=10.0, busy_limit=100.0).write(scans_done=7)
    beat = read_beat(path)
    assert isinstance(beat, Beat)
    assert beat.pid == os.getpid() and beat.scans_done == 7 and beat.busy_since is None
    check = check_heartbeat(path)
    assert check.ok, check.detail
    assert "idle" in check.detail
    assert not list(tmp_path.glob(".heartbeat-*")), "the temporary file was left behind"


def test_a_stale_beat_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    _write_beat(path, time=time.time() - 31.0, interval=10.0)
    check = check_heartbeat(path)
    assert not check.ok
    assert "last heartbeat 31 s ago" in check.detail
    _write_beat(path, time=time.time() - 29.0, interval=10.0)
    assert check_heartbeat(path).ok


def test_a_task_past_its_limit_is_stuck(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    now = time.time()
    _write_beat(path, busy_since=now - 500.0, busy_limit=400.0)
    check = check_heartbeat(path, now=now)
    assert not check.ok
    assert "stuck on one task for 500 s (limit 400 s)" in check.detail
    _write_beat(path, busy_since=now - 300.0, busy_limit=400.0)
    check = check_heartbeat(path, now=now)
    assert check.ok and "busy 300 s" in check.detail


def test_missing_malformed_or_unset_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    assert "no heartbeat file" in check_heartbeat(tmp_path / "none.json").detail
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert not check_heartbeat(bad).ok
    bad.write_text("[1, 2]", encoding="utf-8")
    assert not check_heartbeat(bad).ok
    unset = check_heartbeat(None)
    assert not unset.ok and "USQA_HEARTBEAT_FILE" in unset.detail


def test_an_unwritable_heartbeat_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    HeartbeatFile(blocker / "hb.json", "ingest", interval=1.0).write()  # parent is a file
    assert not check_heartbeat(blocker / "hb.json").ok


def test_heartbeat_file_from_settings_uses_the_task_limit(tmp_path: Path) -> None:
    settings = load_settings(environ={"USQA_HEARTBEAT_FILE": str(tmp_path / "hb.json")})
    hb = HeartbeatFile.from_settings(settings, "worker")
    assert hb is not None
    assert hb.interval == settings.heartbeat_seconds
    assert hb.busy_limit == settings.task_time_limit + 60.0
    short = load_settings(environ={"USQA_HEARTBEAT_FILE": "hb.json", "USQA_TASK_TIME_LIMIT": "5"})
    assert HeartbeatFile.from_settings(short, "worker").busy_limit == 10.0  # type: ignore[union-attr]
    assert HeartbeatFile.from_settings(load_settings(environ={}), "worker") is None


def test_broker_on_an_unused_port_is_unhealthy() -> None:
    url = f"redis://127.0.0.1:{_unused_port()}/0"
    started = time.monotonic()
    check = check_broker(url, timeout=2.0)
    assert not check.ok
    assert "cannot receive scans" in check.detail
    assert time.monotonic() - started < 10


def test_broker_password_is_not_shown() -> None:
    check = check_broker(f"redis://:s3cret-pw@127.0.0.1:{_unused_port()}/0", timeout=1.0)
    assert not check.ok and "s3cret-pw" not in check.detail


@pytest.mark.integration
def test_the_real_broker_answers(redis_url: str) -> None:
    check = check_broker(redis_url)
    assert check.ok, check.detail


def test_usqa_health_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hb.json"
    monkeypatch.setenv("USQA_HEARTBEAT_FILE", str(path))
    monkeypatch.delenv("USQA_BROKER_URL", raising=False)
    assert main(["health"]) == 1  # no beat yet
    HeartbeatFile(path, "run", interval=5.0).write()
    assert main(["health"]) == 0
    out = capsys.readouterr().out
    assert "ok heartbeat" in out
    # Alive, but the broker is gone: unhealthy, unless the broker check is skipped.
    monkeypatch.setenv("USQA_BROKER_URL", f"redis://127.0.0.1:{_unused_port()}/0")
    assert main(["health", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is False
    assert {c["name"]: c["ok"] for c in report["checks"]} == {"heartbeat": True, "broker": False}
    assert main(["health", "--no-broker"]) == 0


@pytest.mark.parametrize("abstract", [False, True])
def test_beats_feed_systemds_watchdog_unless_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abstract: bool
) -> None:
    """A real datagram socket stands in for systemd's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"usqa-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        path = tmp_path / "notify"
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    sock.settimeout(2.0)
    try:
        hb = HeartbeatFile(tmp_path / "hb.json", "worker", interval=10.0, busy_limit=100.0)
        hb.write()
        assert sock.recv(256) == b"READY=1\nWATCHDOG=1"
        hb.write(busy_since=time.time() - 50)  # busy within its limit: still pinging
        assert sock.recv(256) == b"WATCHDOG=1"
        hb.write(busy_since=time.time() - 500)  # stuck: the watchdog is starved
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(256)
        assert check_heartbeat(tmp_path / "hb.json").ok is False
    finally:
        sock.close()


def test_no_notify_socket_means_no_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.ops.health import notify_systemd

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify_systemd(b"WATCHDOG=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/socket")
    assert notify_systemd(b"WATCHDOG=1") is False
