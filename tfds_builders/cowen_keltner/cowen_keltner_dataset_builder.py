"""cowen_keltner: frames of the Cowen & Keltner (2017) emotional videos, the corpus EmoNet was trained on.

Manual download (no licence allows redistribution). Labels come from the released Kragel et al.
(2019) split files, or from the ratings table (argmax of the raters' shares) with a deterministic
stratified split. See README.md for the build commands and `video_frames.py` for the shared rules.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Optional, Sequence

import tensorflow_datasets as tfds
from etils import epath

try:
    from tfds_builders import video_frames as vf
except ImportError:  # `tfds build tfds_builders/cowen_keltner` puts only tfds_builders/ on sys.path.
    sys.path.insert(0, str(epath.Path(__file__).resolve().parents[2]))
    from tfds_builders import video_frames as vf

from emonet_tf.categories import COWEN_KELTNER_CATEGORIES, EMONET_CATEGORIES, canonical_name

#: The released split files (OSF project of Kragel et al. 2019), columns `video,emotion`.
SPLIT_FILES = {"train": "kragel2019_train_video_ids.csv", "test": "kragel2019_test_video_ids.csv"}
#: The ratings table: key column `Filename`, one column per category with the share of raters.
RATINGS_FILE = "CowenKeltnerEmotionalVideos.csv"
#: Label sets of the configs.
LABEL_SETS = {"emonet20": EMONET_CATEGORIES, "ck27": COWEN_KELTNER_CATEGORIES}


@dataclasses.dataclass(eq=False)
class CowenKeltnerConfig(vf.VideoFramesConfig):
    """Adds `label_set`: `emonet20` (the 20 EmoNet outputs) or `ck27` (all 27 categories)."""

    label_set: str = "emonet20"


def video_id_of(value: str) -> str:
    """`0001.mp4`, `mp4_noname/0001.mp4`, `1` -> `0001` (numeric ids are zero-padded to 4 digits)."""
    stem = value.strip().replace("\\", "/").rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    return stem.zfill(4) if stem.isdigit() else stem


def _find_file(root: epath.Path, name: str) -> Optional[epath.Path]:
    matches = [p for p in vf.walk_files(root) if p.name.lower() == name.lower()]
    return matches[0] if matches else None


def _columns(header: Sequence[str]) -> dict[str, int]:
    """Lower-cased column name -> first index (duplicate names, like R's `arousal...37`, keep the first)."""
    out: dict[str, int] = {}
    for i, name in enumerate(header):
        out.setdefault(name.strip().lower(), i)
    return out


def read_split_file(path: epath.Path) -> tuple[list[tuple[str, str]], Optional[vf.Problem]]:
    """(video_id, raw emotion) rows of a released split file, or the problem that makes it unusable."""
    try:
        header, rows = vf.read_csv(path)
    except vf.LabelFileError as err:
        return [], vf.Problem(vf.LABEL_FILE_INVALID, path.name, str(err))
    cols = _columns(header)
    missing = [c for c in ("video", "emotion") if c not in cols]
    if missing:
        return [], vf.Problem(
            vf.LABEL_FILE_INVALID,
            path.name,
            f"missing required column(s) {missing}; found {header} (expected video,emotion)",
        )
    iv, ie = cols["video"], cols["emotion"]
    out = []
    for row in rows:
        cells = row + [""] * (max(iv, ie) + 1 - len(row))
        if cells[iv].strip():
            out.append((video_id_of(cells[iv]), cells[ie].strip()))
    return out, None


def read_ratings(path: epath.Path) -> tuple[dict[str, dict[str, float]], Optional[vf.Problem]]:
    """Video id -> {canonical category: share of raters}, or the problem that makes the table unusable.

    Columns that are not emotion categories (valence, arousal, duplicates...) are ignored; a
    category column seen twice keeps the first; empty or non-numeric cells count as 0.
    """
    try:
        header, rows = vf.read_csv(path)
    except vf.LabelFileError as err:
        return {}, vf.Problem(vf.LABEL_FILE_INVALID, path.name, str(err))
    cols = _columns(header)
    if "filename" not in cols:
        return {}, vf.Problem(vf.LABEL_FILE_INVALID, path.name, f"missing required column 'Filename'; found {header}")
    category_cols: dict[str, int] = {}
    for i, name in enumerate(header):
        canon = canonical_name(name)
        if canon is not None and canon not in category_cols:
            category_cols[canon] = i
    if not category_cols:
        return {}, vf.Problem(vf.LABEL_FILE_INVALID, path.name, f"no emotion category column; found {header}")
    ratings = {}
    for row in rows:
        cells = row + [""] * (len(header) - len(row))
        key = cells[cols["filename"]].strip()
        if not key:
            continue
        shares = {}
        for canon, i in category_cols.items():
            try:
                shares[canon] = max(0.0, float(cells[i]))
            except ValueError:
                shares[canon] = 0.0
        ratings[video_id_of(key)] = shares
    return ratings, None


def argmax_label(shares: dict[str, float]) -> Optional[str]:
    """Category with the highest share (ties: the first in the 27-category order); None if no share is > 0."""
    order = {c: i for i, c in enumerate(COWEN_KELTNER_CATEGORIES)}
    best = None
    for category in sorted(shares, key=lambda c: (order.get(c, len(order)), c)):
        if best is None or shares[category] > shares[best]:
            best = category
    return best if best is not None and shares[best] > 0 else None


class Builder(vf.VideoFramesBuilder):
    """DatasetBuilder for the Cowen & Keltner (2017) videos, one example per sampled frame."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: emonet20/ck27 x every5/fps10/all, splits by video.",
        "2.0.0": vf.VideoFramesBuilder.RELEASE_NOTES["2.0.0"],
    }
    BUILDER_CONFIGS = [
        *vf.sampling_configs(CowenKeltnerConfig, "emonet20", label_set="emonet20"),
        *vf.sampling_configs(CowenKeltnerConfig, "ck27", label_set="ck27"),
        *vf.sampling_configs(CowenKeltnerConfig, "emonet20", vf.PRE_RESIZED_SIZE, label_set="emonet20"),
        *vf.sampling_configs(CowenKeltnerConfig, "ck27", vf.PRE_RESIZED_SIZE, label_set="ck27"),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "emonet20_every5"
    HOMEPAGE = "https://s3-us-west-1.amazonaws.com/emogifs/map.html"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    The videos are distributed by Alan Cowen after filling in his data access form (linked from
    https://s3-us-west-1.amazonaws.com/emogifs/map.html and the PNAS paper, doi:10.1073/pnas.1702247114).
    Put into the manual dir (`--manual_dir`, default ~/tensorflow_datasets/downloads/manual):
      1. the videos `0001.mp4` ... `2185.mp4`, flat (e.g. the unzipped `mp4_noname/`) or in
         per-emotion subfolders (`Videos_by_Category/<emotion>/<id>.mp4`); they are found recursively;
      2. labels, any of:
         - the released split files `kragel2019_train_video_ids.csv` and
           `kragel2019_test_video_ids.csv` (columns `video,emotion`, from the OSF project of
           Kragel et al. 2019): labels and splits are taken from them;
         - the ratings table `CowenKeltnerEmotionalVideos.csv` (column `Filename` plus one column per
           category with the share of raters; https://s3-us-west-1.amazonaws.com/emogifs/CowenKeltnerEmotionalVideos.csv):
           gives the soft labels, and when no split file is present also the labels (highest share)
           and a deterministic 80/20 split stratified by label.
    """

    def _categories(self) -> Sequence[str]:
        label_set = self.builder_config.label_set
        if label_set not in LABEL_SETS:
            raise ValueError(f"Unknown label_set {label_set!r}; expected one of {sorted(LABEL_SETS)}")
        return LABEL_SETS[label_set]

    def _collect(self, dl_manager):
        root = epath.Path(dl_manager.manual_dir)
        categories = list(self._categories())
        label_set = self.builder_config.label_set
        problems: list[vf.Problem] = []
        videos, duplicates = vf.find_videos(root)
        problems += duplicates

        ratings: dict[str, dict[str, float]] = {}
        ratings_path = _find_file(root, RATINGS_FILE)
        if ratings_path is not None:
            ratings, problem = read_ratings(ratings_path)
            if problem:
                problems.append(problem)

        # video id -> (split or None, raw label)
        labelled: dict[str, tuple[Optional[str], str]] = {}
        conflicts: dict[str, set] = collections.defaultdict(set)
        any_split_file = False
        for split, name in SPLIT_FILES.items():
            path = _find_file(root, name)
            if path is None:
                continue
            rows, problem = read_split_file(path)
            if problem:
                problems.append(problem)
                continue
            any_split_file = True
            for video_id, emotion in rows:
                if video_id in labelled and labelled[video_id] != (split, emotion):
                    conflicts[video_id] |= {labelled[video_id], (split, emotion)}
                labelled[video_id] = (split, emotion)
        if not any_split_file:
            for video_id, shares in ratings.items():
                labelled[video_id] = (None, argmax_label(shares) or "")
        for video_id, seen in sorted(conflicts.items()):
            problems.append(
                vf.Problem(vf.LABEL_CONFLICT, video_id, f"listed with different split/label: {sorted(seen)}")
            )
            del labelled[video_id]

        accepted: dict[str, str] = {}
        for video_id in sorted(labelled):
            split, raw = labelled[video_id]
            canon = canonical_name(raw) if raw else None
            if not raw:
                problems.append(vf.Problem(vf.LABEL_MISSING, video_id, "empty label, or no positive rating"))
            elif canon is None:
                problems.append(vf.Problem(vf.LABEL_UNKNOWN, video_id, f"{raw!r} is not a known emotion category"))
            elif canon not in categories:
                problems.append(
                    vf.Problem(
                        vf.LABEL_NOT_IN_CONFIG,
                        video_id,
                        f"{canon} is not among the {len(categories)} {label_set} categories",
                    )
                )
            elif video_id not in videos:
                problems.append(vf.Problem(vf.VIDEO_MISSING, video_id, f"labelled {canon} but no video file found"))
            else:
                accepted[video_id] = canon
        for video_id in sorted(set(videos) - set(labelled) - set(conflicts)):
            problems.append(vf.Problem(vf.LABEL_MISSING, video_id, f"{videos[video_id].name} has no label row"))

        if any_split_file:
            splits = {v: labelled[v][0] for v in accepted}
        else:
            splits = vf.hash_split(accepted, self.builder_config.test_fraction)
        per_split: dict[str, list[vf.VideoEntry]] = {"train": [], "test": []}
        for video_id, label in sorted(accepted.items()):
            shares = ratings.get(video_id)
            soft = vf.one_hot(label, categories)
            if shares:
                total = sum(shares.get(c, 0.0) for c in categories)
                if total > 0:
                    soft = tuple(shares.get(c, 0.0) / total for c in categories)
            per_split[splits[video_id]].append(
                vf.VideoEntry(video_id=video_id, path=str(videos[video_id]), label=label, soft_label=soft)
            )
        return per_split, problems
