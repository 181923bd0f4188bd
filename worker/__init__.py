"""usqa's application layer: settings, the ``usqa`` CLI, the Celery app and tasks, the
ingester, the runner and the reconciler. Business logic lives in ``dicom_io``, ``model`` and
``db``; this package wires them together. Importing it is cheap (nothing is built here).
"""

__all__: list[str] = []
