"""Results back to PACS: a DICOM structured report (SR) of each scored DICOM scan.

- :mod:`~worker.results.sr`: the report (TID 1500, built with highdicom) and its codes.
- :mod:`~worker.results.destinations`: where reports go, as the settings say.
- :mod:`~worker.results.sender`: a C-STORE to a PACS (negotiated SR class) or a file.
- :mod:`~worker.results.outbox`: the delivery loop over the ledger's outbox.
"""

from worker.results.destinations import destinations

__all__ = ["destinations"]
