"""Training: fit on ``train``, select the epoch with the lowest validation loss on ``val``.

Every epoch makes fresh random versions of each training image (``paper``/``graded``: one
original, one JPEG and one blur; ``defects``: one clean and three degraded versions, see
:mod:`model.protocols`), so degradations stay random per epoch; randomness comes from
``(seed, epoch, batch)``, which makes runs reproducible and a resumed run identical to an
uninterrupted one. The next batch is made in a helper thread while the current one trains.
After every epoch the best checkpoint so far is written to ``out`` and the full training
state to ``state`` (``--resume`` continues from it).

With the ``defects`` protocol the network has every output of :data:`model.network.OUTPUTS`
and the loss is ``10 MSE(score / 100) + 2 BCE(defects) + 0.5 BCE(not ultrasound)``:
the score and defect terms on ultrasound versions only, the gate term on all, with
``nonus_share`` extra items per epoch drawn from the training split of
:mod:`model.nonultrasound` (worksheets, charts, photographs, CT/MR; never BUSI test images).
Without it the loss is the plain MSE of the score, as published. The selected epoch is the
one with the lowest validation loss (the same formula on the validation versions and the
validation split of the non-ultrasound material; plain score MSE without defects).

The ``reviewed`` protocol fine-tunes the usqa checkpoint given as ``init`` on the set that
``usqa export-reviews`` wrote (:mod:`model.reviewed`): its preset and outputs are the
checkpoint's, each exported frame is one version per epoch with its reviewers' label, and
the loss is the one above (with the defects formula when the checkpoint has a defect head).
"""

from model.training.config import TrainConfig
from model.training.run import train

__all__ = ["TrainConfig", "train"]
