"""Drawing for ``ffmask preview``: arrays in, an RGB image out (OpenCV, no I/O but ``write_png``).

A contact sheet has one row per face and one column for the face followed by
one column per map:

- mask maps: the face with the masked pixels tinted red and outlined;
- continuous maps: the face under a JET heat overlay whose opacity follows
  the value (0 leaves the face visible, 1 is fully coloured);
- noise maps: the per-pixel residual magnitude sqrt(r² + g² + b²),
  normalised by its 99th percentile, as grey levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, Union

import cv2
import numpy as np

from ffmask.errors import FFMaskError

PAD = 4  # px between cells and around the sheet
HEADER_H = 22  # column titles
TITLE_H = 18  # per-row caption above the cells
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
MASK_COLOR = (255, 48, 48)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4


def _check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{what} must be uint8 (H, W, 3) RGB, got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty: {image.shape}")
    return image


def _check_map(values: np.ndarray, image: np.ndarray, channels: int, what: str) -> np.ndarray:
    values = np.asarray(values)
    expected = image.shape[:2] if channels == 1 else (*image.shape[:2], channels)
    if values.shape != tuple(expected):
        raise ValueError(f"{what} must have shape {tuple(expected)} to match the image, got {values.shape}")
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        raise ValueError(f"{what} must be numeric, got {values.dtype}")
    return values


def overlay_mask(image: np.ndarray, mask: np.ndarray, color=MASK_COLOR, alpha: float = 0.45) -> np.ndarray:
    """uint8 (H,W,3): ``image`` with pixels where ``mask`` (H,W, bool or {0,1}) > 0 tinted and outlined."""
    image = _check_image(image)
    on = _check_map(mask, image, 1, "mask") > 0
    out = image.astype(np.float32)
    out[on] = (1 - alpha) * out[on] + alpha * np.asarray(color, np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(on.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1)
    return out


def heat_colors(values: np.ndarray) -> np.ndarray:
    """uint8 (H,W,3) RGB JET colours of ``values`` (H,W) in [0,1] (clipped; NaN -> 0)."""
    v = np.nan_to_num(np.asarray(values, np.float32), nan=0.0)
    v8 = np.clip(v * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(v8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_heat(image: np.ndarray, values: np.ndarray, alpha: float = 0.85) -> np.ndarray:
    """uint8 (H,W,3): ``image`` blended with the JET colour of ``values`` (H,W) in
    [0,1], with opacity ``alpha * value`` so low values leave the face visible."""
    image = _check_image(image)
    v = np.clip(np.nan_to_num(_check_map(values, image, 1, "values").astype(np.float32)), 0, 1)
    weight = (alpha * v)[..., None]
    out = (1 - weight) * image.astype(np.float32) + weight * heat_colors(v).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def noise_magnitude(noise: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """uint8 (H,W,3) grey image of |noise| (noise (H,W,3) float), divided by its
    ``percentile``-th percentile so one outlier does not flatten the picture."""
    noise = np.asarray(noise, np.float32)
    if noise.ndim != 3 or noise.shape[2] != 3:
        raise ValueError(f"noise must be (H, W, 3), got {noise.shape}")
    mag = np.sqrt(np.sum(np.nan_to_num(noise) ** 2, axis=2))
    scale = float(np.percentile(mag, percentile)) if mag.size else 0.0
    grey = np.clip(mag / scale, 0, 1) if scale > 0 else np.zeros_like(mag)
    g8 = (grey * 255 + 0.5).astype(np.uint8)
    return np.repeat(g8[..., None], 3, axis=2)


def render_map(image: np.ndarray, values: np.ndarray, kind: str) -> np.ndarray:
    """The picture of one map of ``kind`` ("mask", "continuous", "noise") for ``image``."""
    if kind == "mask":
        return overlay_mask(image, values)
    if kind == "continuous":
        return overlay_heat(image, values)
    if kind == "noise":
        _check_image(image)
        _check_map(values, image, 3, "noise")
        return noise_magnitude(values)
    raise ValueError(f"unknown map kind {kind!r}; expected mask, continuous or noise")


def sheet_size(rows: int, columns: int, cell: int) -> tuple[int, int]:
    """(height, width) in pixels of a contact sheet of ``rows`` faces and ``columns`` columns."""
    return HEADER_H + rows * (TITLE_H + cell + PAD) + PAD, PAD + columns * (cell + PAD)


def contact_sheet(faces: Sequence[Mapping], map_kinds: Mapping[str, str], *, cell: int = 160) -> np.ndarray:
    """uint8 (H,W,3) RGB sheet, (H, W) = :func:`sheet_size` (len(faces), 1 + len(map_kinds), cell).

    faces : each {"image": uint8 (S,S,3), "maps": {name: array}, "title": str};
        every map named in ``map_kinds`` must be present, at the image's size.
    map_kinds : map name -> kind, in column order.
    """
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 16:
        raise ValueError(f"cell must be an int >= 16, got {cell!r}")
    if not faces:
        raise ValueError("contact_sheet needs at least one face")
    names = list(map_kinds)
    height, width = sheet_size(len(faces), 1 + len(names), cell)
    sheet = np.empty((height, width, 3), np.uint8)
    sheet[:] = BACKGROUND
    for col, title in enumerate(["face"] + [f"{n} ({map_kinds[n]})" for n in names]):
        x = PAD + col * (cell + PAD)
        _text(sheet, title, x, HEADER_H - 7, cell)
    for row, face in enumerate(faces):
        image = _check_image(face["image"], f"faces[{row}]['image']")
        y = HEADER_H + row * (TITLE_H + cell + PAD)
        _text(sheet, str(face.get("title", "")), PAD, y + TITLE_H - 5, width - 2 * PAD)
        y += TITLE_H
        tiles = [image]
        for name in names:
            if name not in face["maps"]:
                raise ValueError(f"faces[{row}] has no map {name!r}")
            tiles.append(render_map(image, face["maps"][name], map_kinds[name]))
        for col, tile in enumerate(tiles):
            x = PAD + col * (cell + PAD)
            sheet[y : y + cell, x : x + cell] = cv2.resize(tile, (cell, cell), interpolation=cv2.INTER_AREA
                                                           if tile.shape[0] >= cell else cv2.INTER_LINEAR)
    return sheet


def _text(sheet: np.ndarray, text: str, x: int, baseline: int, max_width: int) -> None:
    # Hershey fonts are ASCII only; shorten with an ellipsis to fit the space.
    text = text.encode("ascii", "replace").decode("ascii")
    while text and cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] > max_width:
        text = text[:-2] + "~" if len(text) > 2 else ""
    cv2.putText(sheet, text, (x, baseline), _FONT, _FONT_SCALE, TEXT, 1, cv2.LINE_AA)


def write_png(path: Union[str, Path], image: np.ndarray) -> Path:
    """Write uint8 (H,W,3) RGB ``image`` as a PNG; FFMaskError if it cannot be
    written or ``path`` does not end in ``.png`` (PNG bytes in a ``.jpg`` would
    mislead every viewer and tool that trusts the name)."""
    image = _check_image(image)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise FFMaskError(f"{path}: ffmask writes contact sheets as PNG; give a file name ending in .png")
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FFMaskError(f"could not encode {path} as PNG")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.tobytes())
    except OSError as exc:
        raise FFMaskError(f"cannot write {path}: {exc}") from exc
    return path
