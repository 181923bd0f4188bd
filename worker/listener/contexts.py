"""What the listener accepts: every storage SOP class, and C-ECHO.

pynetdicom picks, for each presentation context, the first transfer syntax in the
*acceptor's* list that the sender offers (not the sender's preference). The lossless ones
come first, so a sender that can send either never re-encodes lossily on the way in (a
lossy re-encode would lower scores for reasons that are not the scan's); the lossy and
video ones follow, so a scanner that offers only its own encoding is accepted as sent.
"""

from __future__ import annotations

from pydicom import uid
from pynetdicom import AllStoragePresentationContexts, VerificationPresentationContexts
from pynetdicom.presentation import PresentationContext, build_context

__all__ = ["LOSSLESS", "LOSSY", "TRANSFER_SYNTAXES", "accepted_contexts"]

LOSSLESS: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.RLELossless,
    uid.ExplicitVRBigEndian,
)
LOSSY: tuple[str, ...] = (
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
    uid.HTJ2K,
    uid.MPEG2MPML,
    uid.MPEG2MPHL,
    uid.MPEG4HP41,
    uid.MPEG4HP41BD,
    uid.MPEG4HP422D,
    uid.MPEG4HP423D,
    uid.MPEG4HP42STEREO,
    uid.HEVCMP51,
    uid.HEVCM10P51,
)
TRANSFER_SYNTAXES: tuple[str, ...] = LOSSLESS + LOSSY


def accepted_contexts() -> list[PresentationContext]:
    """Verification, and every storage SOP class pynetdicom knows, each with
    :data:`TRANSFER_SYNTAXES` in that order."""
    contexts = [
        build_context(cx.abstract_syntax)
        for cx in VerificationPresentationContexts
        if cx.abstract_syntax is not None
    ]
    contexts += [
        build_context(cx.abstract_syntax, list(TRANSFER_SYNTAXES))
        for cx in AllStoragePresentationContexts
        if cx.abstract_syntax is not None
    ]
    return contexts
