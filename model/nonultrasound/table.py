"""The source table: categories, splits, the file and synthetic sources and their image record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES = ("document", "chart", "photo", "ct_mr")


SPLITS = ("train", "val", "heldout")


MIN_SIDE = 128


MAX_SIDE = 1024


#: seed ranges of the synthetic images, per split: [low, high)
SEED_RANGES = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "heldout": (2_000_000, 2_100_000),
}


@dataclass(frozen=True, eq=False)
class NonUltrasoundImage:
    """One image that is not ultrasound (uint8 (H, W) or (H, W, 3)), with its provenance.

    Compared by identity (``eq=False``): the array has no meaningful ``==``."""

    image: np.ndarray
    category: str
    source: str
    split: str


@dataclass(frozen=True)
class _Source:
    """A group of images in one split: a file set (``library`` + ``items``) or a synthetic
    generator variant (``library == "synthetic"``, ``items == (generator, variant)``)."""

    name: str
    category: str
    split: str
    library: str
    items: tuple[str, ...]


_FILE_SOURCES: tuple[_Source, ...] = (
    # document
    _Source("skimage:text", "document", "train", "skimage", ("text",)),
    _Source("skimage:logo", "document", "train", "skimage", ("logo",)),
    _Source("pydicom:GDCMJ2K_TextGBR", "document", "train", "pydicom", ("GDCMJ2K_TextGBR.dcm",)),
    _Source("matplotlib:logo2", "document", "val", "matplotlib", ("logo2.png",)),
    _Source("skimage:page", "document", "heldout", "skimage", ("page",)),
    # chart (test graphics; the plots are synthetic)
    _Source("skimage:colorwheel", "chart", "train", "skimage", ("colorwheel",)),
    _Source("skimage:checkerboard", "chart", "val", "skimage", ("checkerboard",)),
    # photo
    _Source("skimage:astronaut", "photo", "train", "skimage", ("astronaut",)),
    _Source("skimage:camera", "photo", "train", "skimage", ("camera",)),
    _Source("skimage:coins", "photo", "train", "skimage", ("coins",)),
    _Source("skimage:horse", "photo", "train", "skimage", ("horse",)),
    _Source("skimage:hubble_deep_field", "photo", "train", "skimage", ("hubble_deep_field",)),
    _Source("skimage:immunohistochemistry", "photo", "train", "skimage", ("immunohistochemistry",)),
    _Source("skimage:moon", "photo", "train", "skimage", ("moon",)),
    _Source("skimage:retina", "photo", "train", "skimage", ("retina",)),
    _Source("skimage:grass", "photo", "train", "skimage", ("grass",)),
    _Source("skimage:microaneurysms", "photo", "train", "skimage", ("microaneurysms",)),
    _Source("skimage:lfw_subset", "photo", "train", "skimage", ("lfw_subset",)),
    _Source(
        "skimage:stereo_motorcycle",
        "photo",
        "train",
        "skimage",
        ("stereo_motorcycle/0", "stereo_motorcycle/1"),
    ),
    _Source(
        "matplotlib:Minduka", "photo", "train", "matplotlib", ("Minduka_Present_Blue_Pack.png",)
    ),
    _Source("skimage:chelsea", "photo", "val", "skimage", ("chelsea", "cat")),
    _Source("skimage:clock", "photo", "val", "skimage", ("clock",)),
    _Source("skimage:brick", "photo", "val", "skimage", ("brick",)),
    _Source("matplotlib:grace_hopper", "photo", "heldout", "matplotlib", ("grace_hopper.jpg",)),
    _Source("skimage:coffee", "photo", "heldout", "skimage", ("coffee",)),
    _Source("skimage:rocket", "photo", "heldout", "skimage", ("rocket",)),
    _Source("skimage:gravel", "photo", "heldout", "skimage", ("gravel",)),
    _Source("skimage:cell", "photo", "heldout", "skimage", ("cell",)),
    # ct_mr
    _Source("pydicom:CT_small", "ct_mr", "train", "pydicom", ("CT_small.dcm",)),
    _Source(
        "pydicom:J2K_pixelrep_mismatch", "ct_mr", "train", "pydicom", ("J2K_pixelrep_mismatch.dcm",)
    ),
    _Source("pydicom:NM_bone", "ct_mr", "train", "pydicom", ("JPGExtended.dcm", "JPEG2000.dcm")),
    _Source(
        "pydicom:liver_seg",
        "ct_mr",
        "train",
        "pydicom",
        ("liver_1frame.dcm", "liver_expb_1frame.dcm"),
    ),
    _Source("matplotlib:s1045", "ct_mr", "train", "matplotlib", ("s1045.ima.gz",)),
    _Source(
        "pydicom:MR_small",
        "ct_mr",
        "val",
        "pydicom",
        (
            "MR_small.dcm",
            "MR_small_RLE.dcm",
            "MR_small_bigendian.dcm",
            "MR_small_expb.dcm",
            "MR_small_implicit.dcm",
            "MR_small_jp2klossless.dcm",
            "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_padded.dcm",
        ),
    ),
    _Source("skimage:shepp_logan", "ct_mr", "val", "skimage", ("shepp_logan_phantom",)),
    _Source("pydicom:693_J2KI", "ct_mr", "heldout", "pydicom", ("693_J2KI.dcm",)),
    _Source("pydicom:examples_overlay", "ct_mr", "heldout", "pydicom", ("examples_overlay.dcm",)),
)


_ALL_SPLITS = SPLITS


#: (generator, category, variant, splits)
_SYNTHETIC_TABLE: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("report_page", "document", "dejavu", _ALL_SPLITS),
    ("worksheet", "document", "dejavu", _ALL_SPLITS),
    ("text_page", "document", "dejavu", _ALL_SPLITS),
    ("ui_form", "document", "dejavu", _ALL_SPLITS),
    ("report_page", "document", "stix_cm", ("heldout",)),
    ("worksheet", "document", "stix_cm", ("heldout",)),
    ("text_page", "document", "stix_cm", ("heldout",)),
    ("ui_form", "document", "stix_cm", ("heldout",)),
    ("report_page", "document", "dejavu_dark", ("train",)),
    ("text_page", "document", "dejavu_dark", ("train",)),
    ("ui_form", "document", "dejavu_dark", ("train",)),
    ("chart", "chart", "std", _ALL_SPLITS),
    ("dashboard", "chart", "std", _ALL_SPLITS),
    ("chart", "chart", "alt_style", ("heldout",)),
    ("stat_chart", "chart", "std", ("heldout",)),
)


_SYNTHETIC_SOURCES: tuple[_Source, ...] = tuple(
    _Source(f"{gen}:{variant}#{split}", category, split, "synthetic", (gen, variant))
    for gen, category, variant, splits in _SYNTHETIC_TABLE
    for split in splits
)


_SOURCES: tuple[_Source, ...] = _SYNTHETIC_SOURCES + _FILE_SOURCES
