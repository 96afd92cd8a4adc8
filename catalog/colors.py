"""Colour names and perceptual distance (CIEDE2000 in CIELAB), shared by the offline analyzer and search.

Pure Python and import-light, so `catalog search --color` stays fast to start.
"""

from __future__ import annotations

import math
import re

# A small, recognisable vocabulary: the names people type into a search box.
NAMED_COLORS = {
    "red": "#d32f2f", "orange": "#f57c00", "yellow": "#fbc02d", "gold": "#d4a017",
    "green": "#388e3c", "olive": "#808000", "teal": "#00897b", "cyan": "#00bcd4",
    "blue": "#1976d2", "navy": "#1a237e", "purple": "#7b1fa2", "pink": "#ec407a",
    "brown": "#6d4c41", "beige": "#e8d8b0", "black": "#111111", "gray": "#808080",
    "white": "#f5f5f5",
}
ALIASES = {"grey": "gray", "violet": "purple", "magenta": "pink", "turquoise": "teal"}
HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")
# CIEDE2000 distance under which a palette colour counts as "that colour" (search --color).
COLOR_MATCH = 20.0


def parse_color(text: str) -> str:
    """'#abc', 'abcdef' or a colour name -> '#rrggbb'; ValueError with the known names."""
    value = text.strip().lower()
    value = ALIASES.get(value, value)
    if value in NAMED_COLORS:
        return NAMED_COLORS[value]
    m = HEX.match(value)
    if not m:
        raise ValueError(f"unknown colour {text!r}: use #rrggbb or one of {', '.join(sorted(NAMED_COLORS))}")
    digits = m.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits.lower()


def canonical_name(text: str) -> str | None:
    """The vocabulary name for `text` ("Grey" -> "gray"), or None if it is not a name."""
    value = ALIASES.get(text.strip().lower(), text.strip().lower())
    return value if value in NAMED_COLORS else None


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def rgb_to_hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


def rgb_to_lab(rgb) -> tuple[float, float, float]:
    def linear(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgb[:3])
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t):
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def delta_e(lab1, lab2) -> float:
    """CIEDE2000 colour difference: ~1 is barely visible, >20 is a different colour."""
    L1, a1, b1 = lab1
    L2, a2, b2 = lab2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    c_bar = (c1 + c2) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360
    h2p = math.degrees(math.atan2(b2, a2p)) % 360
    dLp, dCp = L2 - L1, c2p - c1p
    if c1p * c2p == 0:
        dhp = 0.0
    elif abs(h2p - h1p) <= 180:
        dhp = h2p - h1p
    else:
        dhp = h2p - h1p - 360 if h2p > h1p else h2p - h1p + 360
    dHp = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dhp / 2))
    L_bar, c_bar_p = (L1 + L2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_bar = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_bar = (h1p + h2p) / 2
    else:
        h_bar = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(h_bar - 30)) + 0.24 * math.cos(math.radians(2 * h_bar))
         + 0.32 * math.cos(math.radians(3 * h_bar + 6)) - 0.20 * math.cos(math.radians(4 * h_bar - 63)))
    d_theta = 30 * math.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(c_bar_p**7 / (c_bar_p**7 + 25**7))
    s_l = 1 + 0.015 * (L_bar - 50) ** 2 / math.sqrt(20 + (L_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -math.sin(math.radians(2 * d_theta)) * r_c
    return math.sqrt((dLp / s_l) ** 2 + (dCp / s_c) ** 2 + (dHp / s_h) ** 2
                     + r_t * (dCp / s_c) * (dHp / s_h))


_NAMED_LAB = {name: rgb_to_lab(hex_to_rgb(h)) for name, h in NAMED_COLORS.items()}


def color_name(rgb) -> str:
    """The nearest name in the vocabulary."""
    lab = rgb_to_lab(rgb)
    return min(_NAMED_LAB, key=lambda name: delta_e(lab, _NAMED_LAB[name]))


def nearest_distance(palette_hexes, target_hex: str) -> float | None:
    """The smallest CIEDE2000 distance from any palette colour to the target."""
    target = rgb_to_lab(hex_to_rgb(target_hex))
    best = None
    for value in palette_hexes or ():
        if isinstance(value, str) and HEX.match(value):
            d = delta_e(rgb_to_lab(hex_to_rgb(parse_color(value))), target)
            best = d if best is None or d < best else best
    return best


def named_matches(palette_hexes) -> list[tuple[str, float]]:
    """Every vocabulary colour within COLOR_MATCH of some palette colour, with that distance.

    Stored per photo when it is analysed, so `search --color orange` is an index look-up
    instead of a CIEDE2000 computation for every photo in the library.
    """
    labs = [rgb_to_lab(hex_to_rgb(parse_color(v))) for v in palette_hexes or ()
            if isinstance(v, str) and HEX.match(v)]
    found = []
    for name, lab in _NAMED_LAB.items():
        best = min((delta_e(c, lab) for c in labs), default=None)
        if best is not None and best < COLOR_MATCH:
            found.append((name, best))
    return found
