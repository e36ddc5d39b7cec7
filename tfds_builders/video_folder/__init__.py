"""The video_folder TFDS builder (see README.md)."""
