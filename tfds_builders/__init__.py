"""TFDS dataset builders (dataset-as-folder, tensorflow/datasets conventions) for video corpora.

* `cowen_keltner/`: the Cowen & Keltner (2017) videos EmoNet was trained on (manual download).
* `video_folder/`: any folder of labelled videos.
Shared logic lives in `video_frames.py`; `make_dummy_data.py` writes the test corpora.
"""
