"""The structured report of a scored scan (worker/results/sr.py), built from pydicom's real
ultrasound cine and read back with pydicom and highdicom: the score, the codes, the
references and UIDs that stay the same on every rebuild."""

from __future__ import annotations

import io
import warnings
from typing import Any

import highdicom.sr as hsr
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from model.defects import DEFECTS
from worker.errors import InputError
from worker.results import sr

pytestmark = pytest.mark.fast  # no service, no data, no model

FACTS = sr.ReportInput(
    score=73.456,
    grade="poor",
    defects=("blur", "depth_attenuation"),
    model_version="abc123def456",
    sha256="5" * 64,
)


def header() -> Dataset:
    path = get_testdata_file("examples_ybr_color.dcm")
    assert path is not None
    return pydicom.dcmread(path, stop_before_pixels=True)


def built(facts: sr.ReportInput = FACTS, sop_class: str = sr.COMPREHENSIVE_SR) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sr.build_report(header(), facts, sop_class)


def read_back(report: Dataset) -> Dataset:
    buf = io.BytesIO()
    report.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def content_items(ds: Dataset) -> list[Dataset]:
    """Every content item of the tree, depth first."""
    found: list[Dataset] = []
    for item in ds.get("ContentSequence", []):
        found.append(item)
        found.extend(content_items(item))
    return found


def codes_of(ds: Dataset) -> set[tuple[str, str]]:
    seen = set()
    for item in content_items(ds):
        for key in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            for code in item.get(key, []):
                seen.add((str(code.CodeValue), str(code.CodingSchemeDesignator)))
    return seen


@pytest.mark.parametrize("sop_class", sr.SR_CLASSES)
def test_the_report_reads_back_with_the_score_grade_and_defects(sop_class: str) -> None:
    ds = read_back(built(sop_class=sop_class))
    assert ds.SOPClassUID == sop_class
    source = header()
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.PatientID == source.PatientID  # the patient module as highdicom copies it
    report: Any = hsr.srread(_file(ds))
    [group] = report.content.get_image_measurement_groups()
    [rating] = group.get_measurements(name=codes.DCM.ImageQualityRating)
    assert rating.value == pytest.approx(73.46)
    assert rating.unit.value == "{0:100}"
    grade = group.get_qualitative_evaluations(name=codes.DCM.QualityAssessment)
    assert [g.value.value for g in grade] == ["USQA-POOR"]
    versions = {
        str(item.TextValue)
        for item in content_items(ds)
        if item.ConceptNameCodeSequence[0].CodeValue == "111003"  # Algorithm Version
    }
    assert versions == {FACTS.model_version}
    [image] = group.source_images
    assert image.referenced_sop_instance_uid == source.SOPInstanceUID
    assert image.referenced_sop_class_uid == source.SOPClassUID
    found = codes_of(ds)
    assert ("111050", "DCM") in found and ("USQA-POOR", "99USQA") in found
    assert ("USQA-BLUR", "99USQA") in found and ("USQA-DEPTHATTEN", "99USQA") in found
    assert not any(value == "113001" for value, _ in found)  # never "Rejected for Quality"
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID


def _file(ds: Dataset) -> io.BytesIO:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return buf


def test_uids_are_the_same_on_rebuild_and_differ_per_model_version_and_class() -> None:
    first, again = built(), built()
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    other = built(sr.ReportInput(**{**FACTS.__dict__, "model_version": "fedcba654321"}))
    assert other.SOPInstanceUID != first.SOPInstanceUID
    enhanced = built(sop_class=sr.ENHANCED_SR)
    assert enhanced.SOPInstanceUID != first.SOPInstanceUID
    assert first.SOPInstanceUID.startswith("2.25.") and len(first.SOPInstanceUID) <= 64
    assert first.SOPInstanceUID != header().SOPInstanceUID


def test_every_defect_and_grade_has_a_short_code() -> None:
    assert set(sr.DEFECT_CODES) == set(DEFECTS)
    for value, _ in [*sr.DEFECT_CODES.values(), *sr.GRADE_CODES.values()]:
        assert len(value) <= 16
    values = [v for v, _ in sr.DEFECT_CODES.values()]
    assert len(set(values)) == len(values)


def test_a_header_without_uids_or_an_unknown_defect_is_refused() -> None:
    bare = header()
    del bare.StudyInstanceUID
    with pytest.raises(InputError, match="StudyInstanceUID"):
        sr.build_report(bare, FACTS)
    with pytest.raises(InputError, match="no report code"):
        built(sr.ReportInput(**{**FACTS.__dict__, "defects": ("smudge",)}))


def test_a_poor_scan_gets_a_quality_issue_selection_and_others_none() -> None:
    from worker.results.kos import KOS_CLASS, build_selection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kos = build_selection(header(), FACTS)
        again = build_selection(header(), FACTS)
        good = build_selection(header(), sr.ReportInput(**{**FACTS.__dict__, "grade": "good"}))
    assert kos is not None and again is not None and good is None
    ds = read_back(kos)
    assert ds.SOPClassUID == KOS_CLASS and ds.SOPInstanceUID == again.SOPInstanceUID
    title = ds.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113010", "DCM")  # never 113001
    [item] = [i for i in content_items(ds) if "ReferencedSOPSequence" in i]
    assert item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == header().SOPInstanceUID
