"""video_folder: frames of any folder of labelled videos, so that users can train EmoNet heads on their own corpus.

Layouts (the root is `--manual_dir`, or the config field / builder kwarg `root`):
  * `root/<label>/<video>` (videos may sit deeper below the label folder), or
  * `root/labels.csv` with columns `video,label[,split]` (video paths relative to the root).
Labels are the sorted label names found, unless the config lists them (`labels`).
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Any, Optional, Sequence

import tensorflow_datasets as tfds
from etils import epath

try:
    from tfds_builders import video_frames as vf
except ImportError:  # `tfds build tfds_builders/video_folder` puts only tfds_builders/ on sys.path.
    sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
    from tfds_builders import video_frames as vf


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(vf.VideoFramesConfig):
    """Adds where the videos are and, optionally, the label list.

    Attributes:
      root: folder of the corpus; None means `--manual_dir`.
      labels: class names in ClassLabel order; None means the sorted names found in the data.
      labels_csv: name of the optional label file inside the root.
    """

    root: Optional[str] = None
    labels: Optional[list[str]] = None
    labels_csv: str = "labels.csv"


def _video_id(path: epath.Path, root: epath.Path) -> str:
    """Path relative to the root without extension (`cats/clip01`): unique, and free of the user's directory."""
    rel = path.relative_to(root).as_posix()
    return rel.rsplit(".", 1)[0]


class Builder(vf.VideoFramesBuilder):
    """DatasetBuilder for a folder of labelled videos, one example per sampled frame."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: every5/fps10/all, folder or CSV labels, splits by video.",
        "2.0.0": vf.VideoFramesBuilder.RELEASE_NOTES["2.0.0"],
    }
    BUILDER_CONFIGS = [
        *vf.sampling_configs(VideoFolderConfig),
        *vf.sampling_configs(VideoFolderConfig, frame_size=vf.PRE_RESIZED_SIZE),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "every5"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Point `--manual_dir` at your corpus (or pass the root in a JSON config, `"root": "/path"`):
      * `<root>/<label>/<video>`: one folder per label, or
      * `<root>/labels.csv` with columns `video,label[,split]`, video paths relative to the root.
    Any container FFmpeg decodes is accepted (.mp4, .avi, .mov, .mkv, .webm, ...). Without a
    `split` column, 20% of each label's videos go to `test` by a stable hash of the video path.
    """

    def __init__(self, *, root: Optional[str] = None, **kwargs: Any):
        """``root`` overrides the config's `root` and `--manual_dir`."""
        self._root_kwarg = root
        super().__init__(**kwargs)
        self._original_state["root"] = root

    def _categories(self) -> Optional[Sequence[str]]:
        labels = self.builder_config.labels
        return list(labels) if labels else None

    def _root(self, dl_manager) -> epath.Path:
        root = self._root_kwarg or self.builder_config.root
        return epath.Path(root) if root else epath.Path(dl_manager.manual_dir)

    def _collect(self, dl_manager):
        root = self._root(dl_manager)
        if not root.is_dir():
            raise ValueError(f"{self._where()}: video folder {root} does not exist")
        problems: list[vf.Problem] = []
        csv_path = root / self.builder_config.labels_csv
        if csv_path.exists():
            rows, file_problem = self._read_csv(csv_path, root, problems)
            if file_problem:
                problems.append(file_problem)
        else:
            rows = self._read_folders(root, problems)

        configured = self._categories()
        labels = list(configured) if configured else sorted({label for _, _, label, _ in rows})
        accepted = []
        for video_id, path, label, split in rows:
            if label not in labels:
                problems.append(vf.Problem(vf.LABEL_NOT_IN_CONFIG, video_id, f"label {label!r} is not among {labels}"))
            else:
                accepted.append((video_id, path, label, split))
        if configured is None and labels:
            self.info.features["label"].names = labels

        unsplit = {v: label for v, _, label, split in accepted if not split}
        hashed = vf.hash_split(unsplit, self.builder_config.test_fraction)
        per_split: dict[str, list[vf.VideoEntry]] = collections.defaultdict(list)
        for video_id, path, label, split in sorted(accepted):
            per_split[split or hashed[video_id]].append(
                vf.VideoEntry(video_id=video_id, path=str(path), label=label, soft_label=vf.one_hot(label, labels))
            )
        return dict(sorted(per_split.items())), problems

    def _read_folders(self, root: epath.Path, problems: list) -> list[tuple[str, epath.Path, str, str]]:
        rows = []
        for path in vf.walk_files(root):
            if path.suffix.lower() not in vf.VIDEO_EXTENSIONS:
                continue
            parts = path.relative_to(root).parts
            video_id = _video_id(path, root)
            if len(parts) < 2:
                problems.append(vf.Problem(vf.LABEL_MISSING, video_id, f"{path.name} is not inside a label folder"))
                continue
            rows.append((video_id, path, parts[0].strip(), ""))
        return rows

    def _read_csv(self, csv_path: epath.Path, root: epath.Path, problems: list):
        try:
            header, raw_rows = vf.read_csv(csv_path)
        except vf.LabelFileError as err:
            return [], vf.Problem(vf.LABEL_FILE_INVALID, csv_path.name, str(err))
        cols = {h.lower(): i for i, h in reversed(list(enumerate(header)))}
        missing = [c for c in ("video", "label") if c not in cols]
        if missing:
            return [], vf.Problem(
                vf.LABEL_FILE_INVALID,
                csv_path.name,
                f"missing required column(s) {missing}; found {header} (expected video,label[,split])",
            )
        listed = []
        for raw in raw_rows:
            cells = [c.strip() for c in raw] + [""] * (len(header) - len(raw))
            video, label = cells[cols["video"]], cells[cols["label"]]
            split = cells[cols["split"]].lower() if "split" in cols else ""
            if not video:
                continue
            path = epath.Path(video) if epath.Path(video).is_absolute() else root / video
            video_id = video.rsplit(".", 1)[0] if not epath.Path(video).is_absolute() else path.stem
            if not label:
                problems.append(vf.Problem(vf.LABEL_MISSING, video_id, "empty label"))
            elif split and not split.replace("_", "").isalnum():
                problems.append(vf.Problem(vf.LABEL_FILE_INVALID, video_id, f"invalid split name {split!r}"))
            elif not path.is_file():
                problems.append(vf.Problem(vf.VIDEO_MISSING, video_id, f"{video} not found"))
            else:
                listed.append((video_id, path, label, split))
        # Stable sort by path: of two files with one id the first in sorted order wins, as in the folder
        # layout and whatever the row order; rows of one file keep their order (the first label wins).
        listed.sort(key=lambda row: row[1].as_posix())
        rows, seen = [], {}
        for video_id, path, label, split in listed:
            if video_id in seen and seen[video_id][0] != path:
                # `clip.mp4` and `clip.avi` share the id `clip` (ids drop the extension).
                problems.append(
                    vf.Problem(
                        vf.DUPLICATE_VIDEO_FILE,
                        video_id,
                        f"two files with this video id: using {seen[video_id][0]}, ignoring {path}",
                    )
                )
            elif video_id in seen:
                problems.append(
                    vf.Problem(
                        vf.LABEL_CONFLICT,
                        video_id,
                        f"listed more than once ({seen[video_id][1:]!r}, then {(label, split)!r})",
                    )
                )
            else:
                seen[video_id] = (path, label, split)
                rows.append((video_id, path, label, split))
        return rows, None
