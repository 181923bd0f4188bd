"""Fault injection for the poison-file tests (loaded only when this folder is on PYTHONPATH
and USQA_TEST_FAULTS=1): the decoder crashes on files whose name contains
``crash-decoder`` (SIGSEGV, as a codec bug would), hangs on ``hang-decoder``, and reads a
``slow-decoder`` file only once ``<file>.release`` exists (a stalled share, under the
test's control)."""

import os

if os.environ.get("USQA_TEST_FAULTS") == "1":
    import signal
    import time

    import dicom_io
    import dicom_io.reader

    _read = dicom_io.reader.read

    def _faulty_read(path, options=None):  # type: ignore[no-untyped-def]
        name = os.path.basename(str(path))
        if "crash-decoder" in name:
            os.kill(os.getpid(), signal.SIGSEGV)
        if "hang-decoder" in name:
            time.sleep(3600)
        if "slow-decoder" in name:
            while not os.path.exists(f"{path}.release"):
                time.sleep(0.05)
        return _read(path, options)

    dicom_io.read = _faulty_read
    dicom_io.reader.read = _faulty_read
