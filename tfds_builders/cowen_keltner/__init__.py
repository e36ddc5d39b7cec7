"""The cowen_keltner TFDS builder (see README.md)."""
