"""Writes the committed `dummy_data/` of the video builders: tiny synthetic videos plus label files.

Run from the repository root:  python -m tfds_builders.make_dummy_data

Every frame is a solid colour that encodes its position: red = 10 * frame index, green = 255 - 10 *
frame index, blue = a per-video constant. Tests decode the stored JPEGs and check that each
example's `frame_index` matches its pixels. Frames are 32x24 pixels, so the whole tree is a few
tens of KB. The expected example counts in the builder tests follow from the table below.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from emonet_tf.categories import COWEN_KELTNER_CATEGORIES

WIDTH, HEIGHT = 32, 24
HERE = pathlib.Path(__file__).resolve().parent

#: (video id, container, fps, frames, split, label in the split file, sub-folder or "").
#: Special rows: frames=-1 corrupt bytes, frames=-2 truncated AVI, frames=0 no file at all.
COWEN_KELTNER_VIDEOS = (
    ("0001", "mp4", 10.0, 12, "train", "Adoration", ""),
    ("0002", "mp4", 30.0, 20, "train", "Amusement", "Videos_by_Category/Amusement"),
    ("0003", "mp4", 15.0, 10, "train", "awe", ""),  # lower case: canonicalized
    ("0004", "avi", 20.0, 16, "train", "Fear", "Videos_by_Category/Fear"),
    ("0005", "mp4", 25.0, 11, "train", "Nostalgia", ""),  # not one of EmoNet's 20
    ("0006", "mp4", 10.0, 8, "train", "Pride", ""),  # not one of the 27
    ("0007", "mp4", 10.0, -1, "train", "Joy", ""),  # corrupt file
    ("0008", "avi", 10.0, -2, "train", "Sadness", ""),  # breaks mid-way
    ("0009", "mp4", 10.0, 0, "train", "Horror", ""),  # listed, no file
    ("0010", "mp4", 10.0, 9, "test", "Adoration", ""),
    ("0011", "mp4", 24.0, 13, "test", "Fear", ""),
    ("0012", "mp4", 12.0, 7, "test", "Happyness", ""),  # unknown label
    ("0013", "mp4", 10.0, 6, "", "", ""),  # file, no label row
    ("0014", "mp4", 20.0, 10, "test", "Anger", ""),  # one of the 27, not of the 20
)

#: (relative path, fps, frames); frames=-1 corrupt.
VIDEO_FOLDER_VIDEOS = (
    ("cats/clip_a.mp4", 10.0, 10),
    ("cats/clip_b.avi", 20.0, 12),
    ("cats/clip_c.mp4", 10.0, 6),
    ("dogs/clip_d.mp4", 15.0, 9),
    ("dogs/clip_e.mp4", 30.0, 15),
    ("dogs/clip_f.mp4", 10.0, 5),
    ("dogs/broken.mp4", 10.0, -1),
    ("loose.mp4", 10.0, 4),  # not inside a label folder
)


def frame_colour(index: int, blue: int) -> tuple[int, int, int]:
    """RGB colour of frame `index` of a dummy video."""
    return (10 * index) % 256, (255 - 10 * index) % 256, blue


def write_video(path: pathlib.Path, fps: float, rgb_frames: Sequence[np.ndarray]) -> pathlib.Path:
    """Writes RGB frames with OpenCV: mp4v for .mp4, MJPG for .avi, FFV1 for .mkv."""
    import cv2

    fourcc = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = rgb_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with {fourcc}")
    for rgb in rgb_frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def coded_frames(n: int, blue: int, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    return [np.full((height, width, 3), frame_colour(i, blue), np.uint8) for i in range(n)]


def write_coded_video(path: pathlib.Path, fps: float, n: int, blue: int = 128) -> pathlib.Path:
    """A video whose frame i is the solid colour `frame_colour(i, blue)`."""
    return write_video(path, fps, coded_frames(n, blue))


def write_corrupt(path: pathlib.Path, size: int = 2048, seed: int = 0) -> pathlib.Path:
    """Random bytes under a video name (cannot be opened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_truncated_avi(path: pathlib.Path, fps: float = 10.0, n: int = 20, keep: float = 0.6) -> pathlib.Path:
    """An MJPG AVI cut after `keep` of its bytes: it opens, reports n frames, and decoding stops early."""
    write_coded_video(path, fps, n)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def ratings_rows(videos=COWEN_KELTNER_VIDEOS) -> tuple[list[str], list[list[str]]]:
    """A ratings table like `CowenKeltnerEmotionalVideos.csv`: Filename, 27 shares, valence, two arousal columns.

    The labelled category gets share 0.5; two others get 0.3 and 0.2, so soft labels are not one-hot.
    """
    header = ["Filename", *COWEN_KELTNER_CATEGORIES, "valence", "arousal", "arousal"]
    rows = []
    for k, (video_id, ext, _, _, _, label, _) in enumerate(videos):
        shares = dict.fromkeys(COWEN_KELTNER_CATEGORIES, 0.0)
        if label in shares or label.title() in shares:
            shares[label.title() if label.title() in shares else label] = 0.5
            others = [c for c in ("Awe", "Joy", "Interest", "Calmness") if c.lower() != label.lower()]
            shares[others[k % 2]] = 0.3
            shares[others[2]] = 0.2
        rows.append([f"{video_id}.{ext}", *(f"{shares[c]:g}" for c in COWEN_KELTNER_CATEGORIES), "5.5", "4", "4.2"])
    return header, rows


def write_csv(path: pathlib.Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> pathlib.Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_cowen_keltner(root: pathlib.Path, ratings: bool = True, split_files: bool = True) -> pathlib.Path:
    """The dummy Cowen & Keltner manual dir: videos, both split files and the ratings table."""
    for k, (video_id, ext, fps, n, _split, _label, folder) in enumerate(COWEN_KELTNER_VIDEOS):
        path = root / folder / f"{video_id}.{ext}"
        if n > 0:
            write_coded_video(path, fps, n, blue=20 * k)
        elif n == -1:
            write_corrupt(path)
        elif n == -2:
            write_truncated_avi(path, fps)
    if split_files:
        for split in ("train", "test"):
            rows = [[f"{v}.{ext}", label] for v, ext, _, _, s, label, _ in COWEN_KELTNER_VIDEOS if s == split]
            write_csv(root / f"kragel2019_{split}_video_ids.csv", ["video", "emotion"], rows)
    if ratings:
        write_csv(root / "CowenKeltnerEmotionalVideos.csv", *ratings_rows())
    return root


def write_video_folder(root: pathlib.Path) -> pathlib.Path:
    """The dummy labelled-folder corpus."""
    for k, (rel, fps, n) in enumerate(VIDEO_FOLDER_VIDEOS):
        if n > 0:
            write_coded_video(root / rel, fps, n, blue=20 * k)
        else:
            write_corrupt(root / rel, seed=k)
    (root / "README.txt").write_text("Dummy corpus of the video_folder builder; non-video files are ignored.\n")
    return root


def main() -> None:
    import shutil

    for name, writer in (("cowen_keltner", write_cowen_keltner), ("video_folder", write_video_folder)):
        out = HERE / name / "dummy_data"
        shutil.rmtree(out, ignore_errors=True)
        writer(out)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"{out}: {sum(1 for p in out.rglob('*') if p.is_file())} files, {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
