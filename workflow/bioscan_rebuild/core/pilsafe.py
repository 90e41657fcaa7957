"""Pillow as the image code expects it, whatever other libraries did to it in this process.

Importing ultralytics (the yolo backend) replaces ``PIL.Image.open`` with a wrapper that, on an
unidentifiable file, tries to install and import a HEIF plugin (raising ModuleNotFoundError
offline), and sets ``ImageFile.LOAD_TRUNCATED_IMAGES`` so truncated photos decode as grey.
Corrupt photos must get a clear status instead, so the image code opens files through here.
"""

from __future__ import annotations

import sys

from PIL import Image


def open_image(fp) -> Image.Image:
    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(fp)
