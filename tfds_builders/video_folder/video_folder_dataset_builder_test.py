"""DatasetBuilderTestCase for video_folder: every config built from dummy_data/ with exact example counts.

dummy_data/ (written by `python -m tfds_builders.make_dummy_data`): labels cats, dogs. The stable
hash split puts cats/clip_c (6 @10 fps) and dogs/clip_f (5 @10) in test; train has cats/clip_a
(10 @10), cats/clip_b (12 @20, avi), dogs/clip_d (9 @15), dogs/clip_e (15 @30). dogs/broken.mp4
(corrupt) and loose.mp4 (no label folder) are left out.
every5 keeps ceil(n / 5) frames; all keeps n. fps10 keeps what emonet_tf.video's ffmpeg-style fps=10
selection keeps (tested against ffmpeg in tests/test_video*.py), counted here by the reader itself.
"""

import tensorflow_datasets as tfds

from emonet_tf import video
from tfds_builders.video_folder import video_folder_dataset_builder

_DUMMY = video_folder_dataset_builder.Builder.code_path.parent / "dummy_data"


def fps10(*paths: str) -> int:
    """Number of frames the fps10 sampling selects in these dummy videos."""
    return sum(len(list(video.iter_frames(_DUMMY / p, video.FrameSampling(fps=10)))) for p in paths)


class _Common:
    DATASET_CLASS = video_folder_dataset_builder.Builder
    EXAMPLE_DIR = video_folder_dataset_builder.Builder.code_path.parent / "dummy_data"
    SKIP_CHECKSUMS = True  # manual download: nothing is fetched


class Every5Test(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["every5"]
    SPLITS = {"train": 2 + 3 + 2 + 3, "test": 2 + 1}


class Fps10Test(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["fps10"]
    SPLITS = {
        "train": fps10("cats/clip_a.mp4", "cats/clip_b.avi", "dogs/clip_d.mp4", "dogs/clip_e.mp4"),
        "test": fps10("cats/clip_c.mp4", "dogs/clip_f.mp4"),
    }


class AllTest(_Common, tfds.testing.DatasetBuilderTestCase):
    BUILDER_CONFIG_NAMES_TO_TEST = ["all"]
    SPLITS = {"train": 10 + 12 + 9 + 15, "test": 6 + 5}


if __name__ == "__main__":
    tfds.testing.test_main()
