"""Procedural drawing for Gym Cards: fonts, playing cards, card backs. No image assets.

Fonts: DejaVu from the system (``ImageFont.truetype`` finds it by basename), else the copy bundled
with matplotlib, else Pillow's built-in font. Suits are drawn with the DejaVu glyphs ♠♥♦♣ when a
DejaVu font was found, and as filled vector shapes otherwise (the built-in font has no suit glyphs).
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

SUIT_GLYPHS: dict[str, str] = {"S": "\u2660", "H": "\u2665", "D": "\u2666", "C": "\u2663"}
SUITS: tuple[str, ...] = ("S", "H", "D", "C")
RED = (200, 0, 0)
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
TABLE_GREEN = (0x35, 0x65, 0x4D)
BACK_BLUE = (40, 70, 160)


def rank_label(rank: int) -> str:
    """Printed rank of a card: 1 -> ``A``, 11/12/13 -> ``J``/``Q``/``K``."""
    return {1: "A", 11: "J", 12: "Q", 13: "K"}.get(rank, str(rank))


@cache
def _load_font(size: int, bold: bool) -> tuple[Font, bool]:
    """``(font, is_dejavu)`` for the first source that works (see module docstring)."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size), True
    except OSError:
        pass
    try:
        import matplotlib

        return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name), size), True
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size), False
    except Exception:  # no FreeType support: fixed-size bitmap font
        return ImageFont.load_default_imagefont(), False


def font(size: int, bold: bool = True) -> Font:
    """A DejaVu Sans font of ``size`` pixels (with fallbacks, see module docstring)."""
    return _load_font(size, bold)[0]


def has_suit_glyphs() -> bool:
    """Whether suit symbols come from a real font (else they are drawn as shapes)."""
    return _load_font(12, True)[1]


def clear_caches() -> None:
    """Forget loaded fonts and drawn cards (tests use this to exercise the font fallback)."""
    _load_font.cache_clear()
    card_image.cache_clear()
    card_back.cache_clear()


def text_center(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fnt: Font, fill: tuple
) -> None:
    """Draw ``text`` centred on ``xy`` (works for bitmap fonts, which have no anchors)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    draw.text((xy[0] - (left + right) / 2, xy[1] - (top + bottom) / 2), text, fill=fill, font=fnt)


def _suit_shape(draw: ImageDraw.ImageDraw, suit: str, cx: float, cy: float, s: float, fill: tuple) -> None:
    """A suit as filled vector shapes of size ``s`` centred at ``(cx, cy)``."""
    r = s / 4
    if suit == "D":
        draw.polygon(
            [(cx, cy - s / 2), (cx + s * 0.38, cy), (cx, cy + s / 2), (cx - s * 0.38, cy)], fill=fill
        )
        return
    if suit == "C":
        for dx, dy in ((0, -r * 1.1), (-r * 1.1, r * 0.3), (r * 1.1, r * 0.3)):
            draw.ellipse([cx + dx - r, cy + dy - r, cx + dx + r, cy + dy + r], fill=fill)
    else:  # hearts point down, spades point up
        sign = 1 if suit == "H" else -1
        lobe_y = cy - sign * r * 0.6
        for dx in (-r, r):
            draw.ellipse([cx + dx - r, lobe_y - r, cx + dx + r, lobe_y + r], fill=fill)
        draw.polygon(
            [
                (cx - 2 * r, lobe_y + sign * r * 0.3),
                (cx + 2 * r, lobe_y + sign * r * 0.3),
                (cx, cy + sign * s / 2),
            ],
            fill=fill,
        )
        if suit == "H":
            return
    draw.polygon([(cx, cy + r * 0.3), (cx - r * 0.8, cy + s / 2), (cx + r * 0.8, cy + s / 2)], fill=fill)


def _suit(draw: ImageDraw.ImageDraw, suit: str, cx: float, cy: float, size: int, fill: tuple) -> None:
    if has_suit_glyphs():
        text_center(draw, (cx, cy), SUIT_GLYPHS[suit], font(size, bold=False), fill)
    else:
        _suit_shape(draw, suit, cx, cy, size * 0.8, fill)


@cache
def card_image(rank: int, suit: str, w: int = 70, h: int = 98) -> Image.Image:
    """A face-up card: white rounded rectangle, rank and small suit top-left, big suit in the middle.

    Hearts and diamonds are red. The corners are transparent (RGBA) so cards can overlap on any
    background.
    """
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([0, 0, w - 1, h - 1], radius=max(3, w // 10), fill=WHITE, outline=BLACK, width=2)
    col = RED if suit in "HD" else BLACK
    small = max(12, h // 3)
    label = rank_label(rank)
    text_center(d, (w * 0.2 + (4 if label == "10" else 0), h * 0.12), label, font(small), col)
    _suit(d, suit, w * 0.2, h * 0.12 + small * 1.05, int(small * 0.85), col)
    _suit(d, suit, w * 0.56, h * 0.6, max(14, h // 2), col)
    return im


@cache
def card_back(w: int = 70, h: int = 98) -> Image.Image:
    """A face-down card: blue with a white diagonal hatch."""
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(im).rounded_rectangle(
        [0, 0, w - 1, h - 1], radius=max(3, w // 10), fill=WHITE, outline=BLACK, width=2
    )
    pad = 5
    iw, ih = w - 2 * pad, h - 2 * pad
    inner = Image.new("RGB", (iw, ih), BACK_BLUE)
    d = ImageDraw.Draw(inner)
    for k in range(-ih, iw, 8):
        d.line([(k, 0), (k + ih, ih)], fill=(170, 190, 240), width=1)
        d.line([(k + ih, 0), (k, ih)], fill=(170, 190, 240), width=1)
    im.paste(inner, (pad, pad))
    return im


def paste_row(
    canvas: Image.Image,
    cards: list[tuple[int, str] | None],
    top: int,
    w: int = 70,
    h: int = 98,
    margin: int = 10,
) -> None:
    """Paste cards left to right at height ``top``; ``None`` is a face-down card.

    Cards are spaced ``w + 6`` apart and overlap when the row would not fit the canvas.
    """
    n = len(cards)
    if n == 0:
        return
    avail = canvas.width - 2 * margin - w
    step = w + 6 if n == 1 else min(w + 6, avail / (n - 1))
    width = w + step * (n - 1)
    x0 = (canvas.width - width) / 2
    for i, card in enumerate(cards):
        im = card_back(w, h) if card is None else card_image(card[0], card[1], w, h)
        canvas.paste(im, (round(x0 + i * step), top), im)


def to_array(im: Image.Image) -> np.ndarray:
    """An RGB uint8 ``HxWx3`` array."""
    return np.asarray(im.convert("RGB"), dtype=np.uint8)
