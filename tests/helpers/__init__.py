"""Support code shared by the tests, one home per concept:

- :mod:`tests.helpers.poll`: ``until``, the one way a test waits (polling, never a fixed sleep).
- :mod:`tests.helpers.files`: tiny real input files (PNG, pydicom's real ultrasound DICOM),
  test settings, `usqa` subprocesses, and an ingester driven tick by tick (``Drop``).
- :mod:`tests.helpers.dicom`: small DICOM datasets built in code (pydicom ``set_pixel_data``).
- :mod:`tests.helpers.ledger`: seeding and reading a ledger through the db package's own
  helpers, the way the worker fills it.
- :mod:`tests.helpers.weights`: small checkpoints (random weights, or fixed answers).
- :mod:`tests.helpers.ratings`: reviewers' ratings, as rows in code or written to a ledger.
- :mod:`tests.helpers.browser`: the headless Chromium of the browser tests.

Database fixtures (engines, URLs, the schema template) live in ``tests/conftest.py``; the fault
tests' harness of real processes lives beside them in ``tests/integration/fault_stack.py``."""
