"""QA metadata and pseudonymisation from a generated DICOM header."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from pathlib import Path

import pytest

from dicom_io import ReadOptions, read
from dicom_io.metadata import METADATA_KEYS, pseudonym
from tests.helpers.dicom import OPERATOR, PATIENT_ID, PATIENT_NAME, build, noise_image, save


def generated(tmp_path: Path) -> Path:
    frames = noise_image((3, 16, 20), seed=1)
    return save(build(frames, "MONOCHROME2"), tmp_path / "meta.dcm")


def test_every_contract_key_is_present(tmp_path: Path) -> None:
    meta = read(generated(tmp_path)).metadata
    contract = {
        "sop_instance_uid",
        "study_instance_uid",
        "series_instance_uid",
        "sop_class_uid",
        "modality",
        "manufacturer",
        "model_name",
        "station_name",
        "device_serial_number",
        "software_versions",
        "transducer",
        "institution",
        "operator",
        "body_part",
        "study_datetime",
        "acquisition_datetime",
        "patient_id_hash",
        "frame_time_ms",
        "photometric",
        "transfer_syntax",
        "burned_in_annotation",
    }
    assert contract <= set(meta) == set(METADATA_KEYS)
    json.dumps(meta)


def test_values_from_the_header(tmp_path: Path) -> None:
    meta = read(generated(tmp_path)).metadata
    assert meta["modality"] == "US"
    assert meta["manufacturer"] == "Acme Ultrasound"
    assert meta["model_name"] == "Sono 9"
    assert meta["station_name"] == "ROOM3"
    assert meta["device_serial_number"] == "SN-77"
    assert meta["software_versions"] == "4.2 / build 17"
    assert meta["transducer"] == "L12-5"  # UNUSED and empty values dropped
    assert meta["institution"] == "General Hospital"
    assert meta["body_part"] == "BREAST"
    assert meta["study_datetime"] == "2024-01-31T09:30:15"
    assert meta["acquisition_datetime"] == "2024-01-31T09:35:12.250000+01:00"
    assert meta["frame_time_ms"] == 40.0
    assert meta["burned_in_annotation"] is True
    assert (meta["rows"], meta["columns"], meta["frames"]) == (16, 20, 3)
    assert meta["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert meta["transfer_syntax_name"] == "Explicit VR Little Endian"


def test_pseudonyms_need_the_salt(tmp_path: Path) -> None:
    path = generated(tmp_path)
    plain = read(path).metadata
    assert plain["operator"] is None and plain["patient_id_hash"] is None
    salted = read(path, ReadOptions(pseudonym_salt="site-secret")).metadata
    key = b"site-secret"
    assert (
        salted["patient_id_hash"]
        == hmac.new(key, f"patient_id\x00{PATIENT_ID}".encode(), hashlib.sha256).hexdigest()
    )
    operator = hmac.new(key, f"operator\x00{OPERATOR}".encode(), hashlib.sha256).hexdigest()
    assert salted["operator"] == "op-" + operator[:16]
    again = read(path, ReadOptions(pseudonym_salt="site-secret")).metadata
    assert again["operator"] == salted["operator"]  # stable across reads and machines


def test_no_phi_in_metadata_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    scan = read(generated(tmp_path), ReadOptions(pseudonym_salt="s"))
    list(scan.iter_frames())
    text = json.dumps(scan.metadata) + caplog.text + repr(scan)
    for secret in (PATIENT_NAME, "Doe", PATIENT_ID, OPERATOR, "Smith"):
        assert secret not in text


def test_pseudonym_roles_differ_and_blank_is_none() -> None:
    assert pseudonym("s", "operator", "X") != pseudonym("s", "patient_id", "X")
    assert pseudonym("s", "operator", "  ") is None
    assert pseudonym(None, "operator", "X") is None
    assert pseudonym("s", "operator", "A  B") == pseudonym("s", "operator", " A B ")
