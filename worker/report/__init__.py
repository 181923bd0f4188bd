"""Rendering of the QA report (``usqa report``), nothing computed here: the figures come
from :mod:`db.qa`.

* ``text``: the terminal table, the drift alert lines and the CSV file;
* ``charts``: the HTML page's charts (matplotlib, text never parsed as mathtext or TeX);
* ``page``: the self-contained HTML page;
* ``thumbnails``: small images of the lowest-scoring scans, only on request.

Import the modules by name (nothing is re-exported here): the charts need matplotlib and the
thumbnails dicom_io and Pillow, and ``usqa report`` imports them only for ``--html``.
"""

__all__: list[str] = []
