"""DatasetBuilderTestCase for cowen_keltner: every config built from dummy_data/ with exact example counts.

dummy_data/ is written by `python -m tfds_builders.make_dummy_data` (see its video table). Written
videos and their frame counts (n frames at f fps):
  train: 0001 (12 @10), 0002 (20 @30), 0003 (10 @15), 0004 (16 @20, avi), 0005 Nostalgia (11 @25, ck27 only)
  test:  0010 (9 @10), 0011 (13 @24), 0014 Anger (10 @20, ck27 only)
every5 keeps ceil(n / 5) frames; all keeps n. fps10 keeps what emonet_tf.video's ffmpeg-style fps=10
selection keeps (its semantics are tested against ffmpeg in tests/test_video*.py), counted here by
the reader itself: these tests check that every selected frame of each video lands in its split.
Left out: 0006 Pride, 0007 corrupt, 0008 truncated, 0009 missing file, 0012 unknown label, 0013 no label.
"""

import tensorflow_datasets as tfds

from emonet_tf import video
from tfds_builders.cowen_keltner import cowen_keltner_dataset_builder

_DUMMY = cowen_keltner_dataset_builder.Builder.code_path.parent / "dummy_data"
_PATHS = {"0002": "Videos_by_Category/Amusement/0002.mp4", "0004": "Videos_by_Category/Fear/0004.avi"}


def fps10(*video_ids: str) -> int:
    """Number of frames the fps10 sampling selects in these dummy videos."""
    return sum(
        len(list(video.iter_frames(_DUMMY / _PATHS.get(v, f"{v}.mp4"), video.FrameSampling(fps=10)))) for v in video_ids
    )


class _Common:
    DATASET_CLASS = cowen_keltner_dataset_builder.Builder
    EXAMPLE_DIR = cowen_keltner_dataset_builder.Builder.code_path.parent / "dummy_data"
    SKIP_CHECKSUMS = True  # manual download: nothing is fetched


class Emonet20Every5Test(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["emonet20_every5"]
    SPLITS = {"train": 3 + 4 + 2 + 4, "test": 2 + 3}


class Emonet20Fps10Test(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["emonet20_fps10"]
    SPLITS = {"train": fps10("0001", "0002", "0003", "0004"), "test": fps10("0010", "0011")}


class Emonet20AllTest(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["emonet20_all"]
    SPLITS = {"train": 12 + 20 + 10 + 16, "test": 9 + 13}


class Ck27Every5Test(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["ck27_every5"]
    SPLITS = {"train": 3 + 4 + 2 + 4 + 3, "test": 2 + 3 + 2}


class Ck27Fps10Test(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["ck27_fps10"]
    SPLITS = {"train": fps10("0001", "0002", "0003", "0004", "0005"), "test": fps10("0010", "0011", "0014")}


class Ck27AllTest(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["ck27_all"]
    SPLITS = {"train": 12 + 20 + 10 + 16 + 11, "test": 9 + 13 + 10}


if __name__ == "__main__":
    tfds.testing.test_main()
