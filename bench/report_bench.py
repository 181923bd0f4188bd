"""How long does the default ``usqa report`` take on a year of scans in PostgreSQL?

Creates a scratch database (dropped first if it exists), brings it to the current schema,
seeds N scans (default 1,000,000) in bulk with ``generate_series`` — a year of a large
department: 8 stations, 40 operators, 8 probes, 6 body parts, about 2 % failed and 1 %
skipped, one station degrading in the last week — runs ``ANALYZE``, then times the default
report (``usqa report`` with no options, as a QA lead would run it) and the HTML report,
in-process and as the real command line.

Run (outside the test suite; takes a few minutes, needs the PostgreSQL server):

    nice -n 10 /work/venv/bin/python bench/report_bench.py
    nice -n 10 /work/venv/bin/python bench/report_bench.py --scans 200000 --keep

The database is dropped at the end unless ``--keep``; ``--reuse`` skips seeding when the
database already holds the scans.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import db  # noqa: E402
from db.qa.report import build_report  # noqa: E402

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
END = date(2025, 12, 31)  # the seeded year ends here

SEED_SQL = """
INSERT INTO model_versions (version, weights_sha256, architecture, weights_name,
                            first_used_at, last_used_at)
VALUES ('bench0000001', repeat('ab', 32), 'resnet18', 'bench.pt', now(), now());

INSERT INTO scans (id, path, size_bytes, mtime_ns, sha256, status, reason, attempts,
    model_version, received_at, queued_at, started_at, finished_at, updated_at, kind,
    modality, manufacturer, model_name, station_name, transducer, operator, body_part,
    sop_instance_uid, study_instance_uid, series_instance_uid, acquisition_datetime)
SELECT g,
    '/drop/bench/' || g || '.dcm', 250000, 0,
    md5(g::text) || md5((-g)::text),
    CASE WHEN r_status < 0.97 THEN 'scored' WHEN r_status < 0.99 THEN 'failed' ELSE 'skipped' END,
    CASE WHEN r_status < 0.97 THEN NULL WHEN r_status < 0.99 THEN 'bench: cannot decode'
         ELSE 'bench: not ultrasound' END,
    1,
    CASE WHEN r_status < 0.99 THEN 'bench0000001' END,
    acquired + interval '3 minutes', acquired + interval '3 minutes',
    acquired + interval '4 minutes', acquired + interval '5 minutes',
    acquired + interval '5 minutes',
    'dicom', 'US',
    (ARRAY['GE Healthcare','GE Healthcare','Philips','Philips','Siemens','Siemens',
           'Canon','Samsung'])[station],
    (ARRAY['LOGIQ E10','LOGIQ E10','EPIQ 7','EPIQ 7','ACUSON Sequoia','ACUSON Sequoia',
           'Aplio i800','RS85'])[station],
    'US-' || station,
    (ARRAY['C1-6','L2-9','C5-1','L12-3','5C1','PVI-475BX','CA1-7A','L3-12A'])[probe],
    'op-' || lpad(operator::text, 2, '0'),
    (ARRAY['ABDOMEN','BREAST','THYROID','PELVIS','HEART','NECK'])[part],
    '1.2.826.0.1.3680043.10.4242.' || g,
    '1.2.826.0.1.3680043.10.4243.' || (g / 3),
    '1.2.826.0.1.3680043.10.4244.' || (g / 3),
    CASE WHEN r_acq < 0.95 THEN (acquired AT TIME ZONE 'UTC') END
FROM (
    SELECT g,
        timestamptz '{start}' + (g - 1) * (interval '365 days' / {n}) AS acquired,
        random() AS r_status, random() AS r_acq,
        1 + floor(random() * 8)::int AS station,
        1 + floor(random() * 8)::int AS probe,
        1 + floor(random() * 40)::int AS operator,
        1 + floor(random() * 6)::int AS part
    FROM generate_series(1, {n}) AS g
) AS s;

INSERT INTO scan_scores (scan_id, model_version, sha256, sop_instance_uid, score, mean_score,
    min_score, p10_score, grade, frames_scored, aggregate, scored_at, decode_ms, inference_ms)
SELECT id, model_version, sha256, sop_instance_uid, score, score, greatest(score - 7, 0),
    greatest(score - 5, 0),
    CASE WHEN score >= 80 THEN 'good' WHEN score >= 45 THEN 'average' ELSE 'poor' END,
    16, 'mean', finished_at, 40, 25
FROM (
    SELECT s.id, s.model_version, s.sha256, s.sop_instance_uid, s.finished_at,
        least(100, greatest(0,
            60 + 2 * (substr(s.station_name, 4)::int)
            - CASE WHEN s.station_name = 'US-5' AND s.received_at > timestamptz '{drop}'
                   THEN 16 ELSE 0 END
            + 13 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
        )) AS score
    FROM scans s
    WHERE s.status = 'scored'
) AS x;

SELECT setval(pg_get_serial_sequence('scans', 'id'), {n});
"""


def create_database(server: str, name: str) -> str:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_database(server: str, name: str) -> None:
    db.dispose_engines()
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def seed(url: str, n: int) -> float:
    start = datetime(END.year, 1, 1, 8, 0, tzinfo=UTC)
    drop = datetime(END.year, 12, 25, 0, 0, tzinfo=UTC)
    sql = SEED_SQL.format(n=n, start=start.isoformat(), drop=drop.isoformat())
    began = time.perf_counter()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - began


def count_scans(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM scans")).scalar() or 0)
    finally:
        engine.dispose()


def time_in_process(url: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        with db.session_scope(url, readonly=True) as session:
            report = build_report(session, today=END)
        times.append(time.perf_counter() - began)
    assert report.overall.stats.scans > 0, "the seeded scans were not found"
    print(
        f"  default report: {report.period}, {report.overall.stats.scans} scans scored, "
        f"{len(report.groups)} stations, {len(report.drift.alerts) if report.drift else 0} "
        "drift alert(s)"
    )
    return times


def time_cli(url: str, args: list[str]) -> float:
    env = {**os.environ, "USQA_DATABASE_URL": url}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "report", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"usqa report {' '.join(args)} failed:\n{done.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help="an existing database URL on the server, used to create the scratch database",
    )
    parser.add_argument("--database", default="usqa_report_bench", help="scratch database")
    parser.add_argument("--scans", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a seeded database")
    args = parser.parse_args(argv)

    url = make_url(args.server).set(database=args.database).render_as_string(hide_password=False)
    if args.reuse and count_scans_safe(url) == args.scans:
        print(f"reusing {args.database} with {args.scans} scans")
        db.upgrade(url)
    else:
        url = create_database(args.server, args.database)
        db.upgrade(url)
        print(f"seeding {args.scans} scans into {args.database} ...", flush=True)
        print(f"  seeded and analysed in {seed(url, args.scans):.1f} s")
    try:
        print("in-process build_report (default period, grouping and drift check):")
        times = time_in_process(url, args.repeats)
        print(
            f"  {', '.join(f'{t:.2f}' for t in times)} s (median {statistics.median(times):.2f} s)"
        )
        print("command line, including Python start-up and imports:")
        for label, extra in (("usqa report", []), ("usqa report --html", ["--html"])):
            with tempfile.TemporaryDirectory() as tmp:
                cli_args = [*extra, str(Path(tmp) / "report.html")] if extra else []
                print(f"  {label}: {time_cli(url, cli_args):.2f} s")
        with tempfile.TemporaryDirectory() as tmp:
            year = [
                "--since",
                f"{END.year}-01-01",
                "--until",
                END.isoformat(),
                "--html",
                str(Path(tmp) / "year.html"),
            ]
            print(f"  usqa report --since/--until a whole year --html: {time_cli(url, year):.2f} s")
    finally:
        if not args.keep:
            drop_database(args.server, args.database)
    return 0


def count_scans_safe(url: str) -> int:
    try:
        return count_scans(url)
    except Exception:  # no database or no tables yet: seed afresh
        return -1


if __name__ == "__main__":
    raise SystemExit(main())
