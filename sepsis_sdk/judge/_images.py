"""Images for vision judges: data URLs, and shrinking when a provider says the payload is too large."""

from __future__ import annotations

import base64
import io

from sepsis_sdk.errors import JudgeError


def data_url(image: bytes, mime: str = "image/jpeg") -> str:
    """A ``data:`` URL holding ``image`` base64-encoded (the OpenAI vision format)."""
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


def image_part(image: bytes, mime: str = "image/jpeg", detail: str | None = "auto") -> dict:
    """An OpenAI ``image_url`` content part."""
    url: dict[str, str] = {"url": data_url(image, mime)}
    if detail:
        url["detail"] = detail
    return {"type": "image_url", "image_url": url}


def image_size(image: bytes) -> tuple[int, int]:
    """``(width, height)`` of an encoded image (needs Pillow)."""
    Image = _pil()
    with Image.open(io.BytesIO(image)) as im:
        return im.size


def _pil():  # type: ignore[no-untyped-def]
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow ships with the llm extra
        from sepsis_sdk.errors import MissingDependencyError

        raise MissingDependencyError("pillow", "llm", "resizing judge images") from exc
    return Image


def fit_image(image: bytes, max_side: int, *, quality: int = 85) -> tuple[bytes, str]:
    """Scale ``image`` down so its longer side is at most ``max_side``, re-encoded as JPEG.

    Images already small enough are returned unchanged (with their MIME type guessed as JPEG/PNG).

    Returns:
        ``(encoded bytes, mime type)``.

    Raises:
        JudgeError: the bytes are not a decodable image.
    """
    Image = _pil()
    try:
        with Image.open(io.BytesIO(image)) as im:
            im.load()
            fmt = (im.format or "JPEG").upper()
            if max(im.size) <= max_side:
                return image, Image.MIME.get(fmt, "image/jpeg")
            scale = max_side / max(im.size)
            size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
            small = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    except OSError as exc:
        raise JudgeError(f"judge evidence holds an image that cannot be decoded: {exc}") from exc
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=quality)
    return out.getvalue(), "image/jpeg"
