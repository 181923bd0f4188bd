"""The structured report (SR) of one scored DICOM scan, built with highdicom.

A TID 1500 "Imaging Measurement Report" with one measurement group for the scan:

- the score as ``(111029, DCM, "Image Quality Rating")`` in UCUM ``{0:100}`` (the
  standard's own 0-100 quality scale of TID 4014: 0 worst, 100 best);
- the grade as a qualitative evaluation named ``(111050, DCM, "Quality Assessment")``, its
  value one of the private codes of :data:`GRADE_CODES`;
- each listed defect, most probable first, as a qualitative evaluation named
  ``(USQA-DEFECT, 99USQA, "Image quality defect")``, its value a private code of
  :data:`DEFECT_CODES`;
- the model version as the algorithm identification (TID 4019: name ``usqa``, version =
  the model version) of the group and of the score;
- the scan as the group's source image (its SOP class and instance), with the study,
  series and patient modules copied from the scan's own header, as highdicom requires.

Codes: DICOM (DCM) and SNOMED CT have no codes for usqa's grades and defect names, so they
are private codes under the coding scheme designator ``99USQA`` (PS3.16 8.2: private
designators start with "99"). ``(113001, DCM, "Rejected for Quality Reasons")`` is never
used: archives that support IHE image rejection notes hide the images it references,
and a score is advice for QA, not a decision to withdraw a scan.

UIDs are derived (:func:`report_uids`) from the scan's SOP Instance UID and content hash,
the model version and the SR SOP class, so building the report again (a retry, a resend)
gives the same SOP Instance UID and the destination stores one object, never two.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from worker.errors import InputError

__all__ = [
    "ALGORITHM_NAME",
    "DEFECT_CODES",
    "GRADE_CODES",
    "SR_CLASSES",
    "ReportInput",
    "ReportUids",
    "build_report",
    "derived_uid",
    "report_uids",
]

ALGORITHM_NAME = "usqa"
SCHEME = "99USQA"
MANUFACTURER = "usqa"
SERIES_NUMBER = 9901  # far from a scanner's own series numbers
SERIES_DESCRIPTION = "usqa image quality"

COMPREHENSIVE_SR = UID("1.2.840.10008.5.1.4.1.1.88.33")
COMPREHENSIVE_3D_SR = UID("1.2.840.10008.5.1.4.1.1.88.34")
ENHANCED_SR = UID("1.2.840.10008.5.1.4.1.1.88.22")
# the SR SOP classes that can hold TID 1500, in the order offered and preferred. Basic Text
# SR cannot: it allows no NUM content item, and the score is one.
SR_CLASSES = (COMPREHENSIVE_SR, COMPREHENSIVE_3D_SR, ENHANCED_SR)

GRADE_CODES: dict[str, tuple[str, str]] = {
    "good": ("USQA-GOOD", "Good image quality"),
    "average": ("USQA-AVERAGE", "Average image quality"),
    "poor": ("USQA-POOR", "Poor image quality"),
}
DEFECT_NAME = ("USQA-DEFECT", "Image quality defect")
# code values are at most 16 characters (SH)
DEFECT_CODES: dict[str, tuple[str, str]] = {
    "low_gain": ("USQA-LOWGAIN", "Low gain"),
    "high_gain": ("USQA-HIGHGAIN", "High gain"),
    "low_contrast": ("USQA-LOWCONTRAST", "Low contrast"),
    "noise": ("USQA-NOISE", "Noise"),
    "depth_attenuation": ("USQA-DEPTHATTEN", "Depth attenuation"),
    "shadowing": ("USQA-SHADOWING", "Acoustic shadowing"),
    "no_signal": ("USQA-NOSIGNAL", "No signal"),
    "blur": ("USQA-BLUR", "Blur"),
    "compression": ("USQA-COMPRESSION", "Compression artefacts"),
    "dead_elements": ("USQA-DEADELEMENT", "Dead transducer elements"),
}


@dataclass(frozen=True)
class ReportInput:
    """What one report says: the scan's score for one model version."""

    score: float
    grade: str
    defects: tuple[str, ...]
    model_version: str
    sha256: str


# the UUID5 namespace of usqa's derived UIDs (a fixed random UUID: never change it)
UID_NAMESPACE = uuid.UUID("6f0c4d52-3f0e-4b8e-9a51-2f6d1c7e9b13")


def derived_uid(*parts: str) -> str:
    """A 2.25 UID (PS3.5 B.2) from a UUID5 of ``parts``: the same parts, the same UID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, chr(0).join(parts)).int}"


@dataclass(frozen=True)
class ReportUids:
    series_instance_uid: str
    sop_instance_uid: str
    tracking_uid: str


def report_uids(header: Dataset, facts: ReportInput, sop_class: str) -> ReportUids:
    """The report's UIDs (2.25 UIDs from a hash): the same for the same scan, model
    version and SR class; another model version (a rescore) gives another report. The SR
    series is one per study, model version and class."""
    scan_uid = str(header.SOPInstanceUID)
    study = str(header.StudyInstanceUID)
    version = facts.model_version
    return ReportUids(
        series_instance_uid=derived_uid("usqa-sr-series", study, version, sop_class),
        sop_instance_uid=derived_uid("usqa-sr", scan_uid, facts.sha256, version, sop_class),
        tracking_uid=derived_uid("usqa-sr-group", scan_uid, facts.sha256, version),
    )


def _check(header: Dataset, facts: ReportInput) -> None:
    missing = [
        k
        for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        if not header.get(k)
    ]
    if missing:
        raise InputError(f"the scan's header has no {', '.join(missing)}: no report can name it")
    if facts.grade not in GRADE_CODES:
        raise InputError(f"grade {facts.grade!r} has no report code (expected good, average, poor)")
    unknown = [d for d in facts.defects if d not in DEFECT_CODES]
    if unknown:
        raise InputError(f"defects {unknown} have no report code (worker/results/sr.py)")


def _group(header: Dataset, facts: ReportInput, uids: ReportUids) -> object:
    from highdicom.sr import (
        AlgorithmIdentification,
        CodedConcept,
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )

    algorithm = AlgorithmIdentification(name=ALGORITHM_NAME, version=facts.model_version)
    score = Measurement(
        name=codes.DCM.ImageQualityRating,
        value=round(float(facts.score), 2),
        unit=CodedConcept("{0:100}", "UCUM", "0:100 range"),
        algorithm_id=algorithm,
    )
    grade = QualitativeEvaluation(
        name=codes.DCM.QualityAssessment, value=CodedConcept(*_code(GRADE_CODES[facts.grade]))
    )
    defects = [
        QualitativeEvaluation(
            name=CodedConcept(*_code(DEFECT_NAME)), value=CodedConcept(*_code(DEFECT_CODES[d]))
        )
        for d in facts.defects
    ]
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=uids.tracking_uid, identifier="usqa image quality"
        ),
        algorithm_id=algorithm,
        measurements=[score],
        qualitative_evaluations=[grade, *defects],
        source_images=[SourceImageForMeasurementGroup.from_source_image(header)],
    )


def _code(pair: tuple[str, str]) -> tuple[str, str, str]:
    return pair[0], SCHEME, pair[1]


def build_report(header: Dataset, facts: ReportInput, sop_class: str = COMPREHENSIVE_SR) -> Dataset:
    """The SR of the scan whose header (read without pixels) is ``header``, as a
    ``sop_class`` of :data:`SR_CLASSES`. InputError when the header cannot be named (no
    UIDs) or a grade or defect has no code."""
    from highdicom.sr import (
        Comprehensive3DSR,
        ComprehensiveSR,
        DeviceObserverIdentifyingAttributes,
        EnhancedSR,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
    )

    _check(header, facts)
    uids = report_uids(header, facts, sop_class)
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=derived_uid("usqa-device", ALGORITHM_NAME),
            name=ALGORITHM_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=facts.model_version,
        ),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.DiagnosticUltrasonography,
        imaging_measurements=[_group(header, facts, uids)],  # type: ignore[list-item]
    )
    kind = {COMPREHENSIVE_SR: ComprehensiveSR, COMPREHENSIVE_3D_SR: Comprehensive3DSR}.get(
        UID(sop_class), EnhancedSR
    )
    if UID(sop_class) not in SR_CLASSES:
        raise InputError(f"SR SOP class {sop_class} cannot hold a measurement report")
    sr = kind(
        evidence=[header],
        content=report,
        series_instance_uid=uids.series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SERIES_DESCRIPTION,
    )
    return sr
