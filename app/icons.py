"""The tray icon in each of its states, drawn with Pillow.

The PNG and ICO files in `assets/icons` are generated from `draw` by
`python -m app.icons` and shipped as package data; a test checks they match.
Each state has its own colour and its own glyph, so it reads at 16 px and
for colour-blind users too. The dark outline keeps it visible on light and
dark taskbars.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any


class IconState(enum.StrEnum):
    IDLE = "idle"  # running, nothing in progress, a GPU to use
    WORKING = "working"  # a model is answering a request
    LOADING = "loading"  # a model is loading, unloading or downloading
    ERROR = "error"  # the server does not answer, or a model failed
    CPU_ONLY = "cpu-only"  # running, nothing in progress, no usable GPU


COLOURS = {
    IconState.IDLE: (46, 160, 67),
    IconState.WORKING: (31, 111, 235),
    IconState.LOADING: (212, 140, 20),
    IconState.ERROR: (207, 34, 46),
    IconState.CPU_ONLY: (110, 119, 129),
}
TRAY_SIZE = 64  # what the tray is given; the platform scales it down
ICO_SIZES = [(16, 16), (20, 20), (24, 24), (32, 32), (40, 40), (48, 48), (64, 64), (128, 128), (256, 256)]
APP_ICON = "aistack.ico"
_SUPERSAMPLE = 4


def draw(state: IconState, size: int = TRAY_SIZE) -> Any:
    """The icon for `state` as an RGBA image of `size` x `size` pixels."""
    from PIL import Image, ImageDraw

    big = size * _SUPERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    u = big / 16  # one pixel of the 16 px icon
    pen.ellipse((0.5 * u, 0.5 * u, 15.5 * u, 15.5 * u), fill=(20, 20, 20, 255))
    pen.ellipse((1.5 * u, 1.5 * u, 14.5 * u, 14.5 * u), fill=(*COLOURS[state], 255))
    _glyph(pen, state, u)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _glyph(pen: Any, state: IconState, u: float) -> None:
    white = (255, 255, 255, 255)
    if state == IconState.IDLE:  # a steady light
        pen.ellipse((5 * u, 5 * u, 11 * u, 11 * u), fill=white)
    elif state == IconState.WORKING:  # activity bars
        for left, top in ((4, 7), (7, 4.5), (10, 6)):
            pen.rectangle((left * u, top * u, (left + 2) * u, (16 - top) * u), fill=white)
    elif state == IconState.LOADING:  # a down arrow
        pen.rectangle((7 * u, 3.5 * u, 9 * u, 8.5 * u), fill=white)
        pen.polygon([(4.5 * u, 8 * u), (11.5 * u, 8 * u), (8 * u, 12.5 * u)], fill=white)
    elif state == IconState.ERROR:  # an exclamation mark
        pen.rectangle((7 * u, 3.5 * u, 9 * u, 9.5 * u), fill=white)
        pen.rectangle((7 * u, 10.5 * u, 9 * u, 12.5 * u), fill=white)
    else:  # CPU only: a chip with pins
        pen.rectangle((5 * u, 5 * u, 11 * u, 11 * u), outline=white, width=max(1, round(1.5 * u)))
        for at in (6.5, 9.5):
            pen.line((at * u, 3.5 * u, at * u, 5 * u), fill=white, width=max(1, round(u)))
            pen.line((at * u, 11 * u, at * u, 12.5 * u), fill=white, width=max(1, round(u)))


def load(state: IconState) -> Any:
    """The shipped tray image for `state` (drawn afresh if the file is missing)."""
    from PIL import Image

    try:
        with Image.open(icon_folder() / f"{state.value}.png") as image:
            image.load()
            return image.copy()
    except OSError:
        return draw(state)


def icon_folder() -> Path:
    """`assets/icons` in a checkout, an installed package or a frozen build."""
    import assets

    return assets.ASSETS / "icons"


def write_all(folder: Path) -> list[Path]:
    """Write `<state>.png` (tray size), `<state>-16.png`, `<state>-32.png` and `<state>.ico` (all sizes)."""
    written: list[Path] = []
    for state in IconState:
        for size, suffix in ((TRAY_SIZE, ""), (16, "-16"), (32, "-32")):
            path = folder / f"{state.value}{suffix}.png"
            draw(state, size).save(path, optimize=True)
            written.append(path)
        path = folder / f"{state.value}.ico"
        # Each ICO size is drawn at that size (not shrunk from the largest), so 16 px stays crisp.
        frames = [draw(state, w) for w, _ in ICO_SIZES]
        frames[-1].save(path, format="ICO", sizes=ICO_SIZES, append_images=frames[:-1])
        written.append(path)
    app_icon = folder / APP_ICON  # the program's own icon (exe, installer, Start menu): the idle state
    app_icon.write_bytes((folder / f"{IconState.IDLE.value}.ico").read_bytes())
    return [*written, app_icon]


if __name__ == "__main__":
    for written in write_all(icon_folder()):
        print(written)
