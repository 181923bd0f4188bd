"""The Key Object Selection (KOS) of a poor scan: a short DICOM object titled
``(113010, DCM, "Quality Issue")`` that lists the scan, so a viewer can show "images with a
quality issue" beside the study. Sent after the scan's SR, to the same destinations; a PACS
that does not accept KOS objects just gets the SR.

Never titled ``(113001, DCM, "Rejected for Quality Reasons")``: archives that implement IHE
image rejection notes hide every image such an object references.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from worker.results.sr import MANUFACTURER, ReportInput, derived_uid

__all__ = ["KOS_CLASS", "KOS_GRADES", "build_selection"]

KOS_CLASS = UID("1.2.840.10008.5.1.4.1.1.88.59")  # Key Object Selection Document Storage
KOS_GRADES = ("poor",)  # the grades whose scans are listed
SERIES_NUMBER = 9902


def build_selection(header: Dataset, facts: ReportInput) -> Dataset | None:
    """The KOS of the scan whose header is ``header``, or None when its grade lists none.
    Its UIDs are derived like the SR's: the same scan and model version, the same object."""
    if facts.grade not in KOS_GRADES:
        return None
    from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument

    scan_uid, study = str(header.SOPInstanceUID), str(header.StudyInstanceUID)
    version = facts.model_version
    content = KeyObjectSelection(
        document_title=codes.DCM.QualityIssue,
        referenced_objects=[header],
        description=f"usqa: poor image quality (score {facts.score:.0f}, model {version})",
    )
    return KeyObjectSelectionDocument(
        evidence=[header],
        content=content,
        series_instance_uid=derived_uid("usqa-kos-series", study, version),
        series_number=SERIES_NUMBER,
        sop_instance_uid=derived_uid("usqa-kos", scan_uid, facts.sha256, version),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )
