"""Sample videos for ``fiftyone-videoprism demo``: short clips of a coloured shape moving across
a plain background, one motion per clip, written with PyAV (no download needed)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

# name -> (RGB of the shape, RGB of the background)
SCENES = {
    "red_ball_on_grass": ((220, 30, 30), (40, 140, 50)),
    "blue_ball_on_sand": ((40, 70, 220), (220, 200, 150)),
    "yellow_square_at_night": ((240, 220, 40), (10, 10, 40)),
    "white_square_in_snow": ((255, 255, 255), (200, 210, 230)),
    "green_ball_on_water": ((40, 200, 70), (30, 90, 170)),
    "black_square_on_white": ((0, 0, 0), (245, 245, 245)),
}
QUERY = "a red ball rolling on green grass"
CLASSES = ["grass", "sand", "night", "snow", "water"]


def _frames(shape_rgb, background_rgb, count: int, width: int, height: int, round_shape: bool):
    yy, xx = np.mgrid[0:height, 0:width]
    r = height // 5
    for i in range(count):
        cx = r + (width - 2 * r) * i / max(count - 1, 1)
        cy = height / 2 + (height / 4) * np.sin(2 * np.pi * i / count)
        if round_shape:
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        else:
            inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = background_rgb
        frame[inside] = shape_rgb
        yield frame


def write_demo_videos(folder: str | Path, num_frames: int = 48, width: int = 320,
                      height: int = 240) -> list[Path]:
    """Writes the sample clips into ``folder`` (kept if already there); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (shape_rgb, background_rgb) in SCENES.items():
        path = folder / f"{name}.mp4"
        paths.append(path)
        if path.is_file():
            continue
        tmp = path.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("mpeg4", rate=24)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in _frames(shape_rgb, background_rgb, num_frames, width, height,
                                 round_shape="ball" in name):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        tmp.replace(path)
    return paths
