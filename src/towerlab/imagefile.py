"""Opening an image, the one way every reader in towerlab does it: training folders, masks, `predict` and the
service's rows. Three rules, each learnt from a hostile file:

- formats on an allow-list (what cameras, scanners and the datasets write): an EPS sent to the service must never
  reach Ghostscript, nor a DDS or PSD reach a decoder that raises what nobody expects;
- the pixel count is checked on the header, before any pixel is decoded: a 164 KB PNG can claim 13,000 x 13,000
  pixels (1.5 GB once decoded);
- any failure of the decoder, whatever it raises, becomes one BadImage with the reason (the caller names the file).

Torch-free: the ONNX service imports it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")  # Pillow's names
FORMAT_NAMES = "PNG, JPEG, BMP, TIFF or WebP"
MAX_PIXELS = 40_000_000  # 6,300 x 6,300, a 36 MP photo; TOWERLAB_MAX_PIXELS raises it for larger ones
PIXELS_ENV = "TOWERLAB_MAX_PIXELS"


class BadImage(ValueError):
    """Why these bytes are not an image towerlab decodes (the caller adds which file or row)."""


def max_pixels() -> int:
    """The cap, read when an image is opened (never at import: a long-lived process may change it)."""
    raw = os.environ.get(PIXELS_ENV, "")
    if not raw:
        return MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise BadImage(
            f"{PIXELS_ENV}={raw!r} is not a positive whole number of pixels; unset it or give e.g. 100000000"
        )
    return value


@contextmanager
def opened(source):
    """The PIL image of `source` (a path or a binary file object), header checked; any exception raised while it is
    open, by Pillow or by the caller's conversions, comes out as BadImage (towerlab's own errors pass through)."""
    from PIL import Image, UnidentifiedImageError

    from towerlab.errors import TowerlabError

    cap = max_pixels()
    Image.MAX_IMAGE_PIXELS = None  # ours below is the one check, on the header, with the size in its words
    try:
        with Image.open(source, formats=FORMATS) as im:
            if im.width * im.height > cap:
                raise BadImage(
                    f"a {im.width}x{im.height} image: more than the {cap:,} pixels towerlab decodes (a few "
                    f"bytes of PNG can claim gigabytes); set {PIXELS_ENV} to read larger images"
                )
            yield im
    except (BadImage, TowerlabError):
        raise
    except UnidentifiedImageError:
        raise BadImage(f"cannot be decoded: not a {FORMAT_NAMES} image") from None
    except Exception as e:  # noqa: BLE001 -- whatever a decoder raises (NotImplementedError, struct.error, ...)
        raise BadImage(f"cannot be decoded ({reason(e)})") from None


def reason(e: BaseException, limit: int = 200) -> str:
    """'Type: first line of the message', never an object's repr with its address nor a path the caller names
    already (an OSError says its strerror), shortened in the middle past `limit` characters."""
    text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    text = text.strip().splitlines()[0] if text.strip() else ""
    if len(text) > limit:
        text = f"{text[: limit // 2]}...{text[-limit // 2 :]}"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def decode(source, mode: str, size: tuple[int, int] | None = None):
    """uint8 numpy [H, W] (mode L) or [H, W, 3] (mode RGB), resized to size=(H, W) when given."""
    import numpy as np
    from PIL import Image

    with opened(source) as im:
        im = im.convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        return np.array(im, dtype=np.uint8)
