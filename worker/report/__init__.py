"""Rendering of the QA report (``usqa report``), nothing computed here: the figures come
from :mod:`db.qa`.

* ``text``: the terminal table, the drift alert lines and the CSV file;
* ``page``: the self-contained HTML page;
* ``thumbnails``: small images of the lowest-scoring scans, only on request.

Import the modules by name: the page loads matplotlib and the thumbnails load dicom_io and
Pillow, which ``usqa report`` without ``--html`` does not need.
"""

__all__: list[str] = []
