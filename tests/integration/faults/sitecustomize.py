"""Fault injection for the poison-file tests (loaded only when this folder is on PYTHONPATH
and USQA_TEST_FAULTS=1): the decoder crashes on files whose name contains
``crash-decoder`` (SIGSEGV, as a codec bug would) and hangs on ``hang-decoder``."""

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
        return _read(path, options)

    dicom_io.read = _faulty_read
    dicom_io.reader.read = _faulty_read
