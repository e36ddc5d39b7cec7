"""Bounds every weight reader enforces on untrusted files, with the source of each number.

A file that claims more than these bounds is refused (WeightFormatError naming the file and the bound)
before the memory is allocated, so the memory one load can take is bounded whatever the file says:
at most MAX_LOAD_BYTES of array data, plus the bytes of the file the reader holds at once (the pickle
of a .pth zip entry, at most MAX_PICKLE_BYTES; one text line, at most the bound of `max_line_chars`).
"""

from __future__ import annotations

#: Largest number of elements one tensor/array/blob may hold: 2**26 = 67,108,864. The largest layer of
#: every supported network is fc6, 9216 x 4096 = 37,748,736 values (`emonet_tf.backbone.WEIGHT_SHAPES`);
#: 2**26 is the next power of two above it.
MAX_TENSOR_ELEMENTS = 2**26

#: Largest total of array bytes one load may create (storages read plus the tensors built from them, or
#: the arrays of a .npy pickle): 2**30 bytes = 1 GiB. The biggest genuine file, the 1000-way ImageNet
#: AlexNet (60,965,224 float32 parameters = 244 MB), needs 488 MB (raw storages plus the native copies).
MAX_LOAD_BYTES = 2**30

#: Largest pickle accepted inside a .pth zip (`data.pkl`): 16 MiB. That pickle holds only key names and
#: tensor headers: 1.6 KB for emonet-py's emonet.pth (16 tensors), about 100 bytes per tensor in general.
MAX_PICKLE_BYTES = 2**24

#: Largest number of entries in a .pth zip: 4096. torch.save writes one entry per storage plus 6 small
#: files (16 + 6 = 22 for emonet.pth).
MAX_ZIP_ENTRIES = 4096

#: Deepest nesting of containers in a checkpoint: 32 (a state_dict is 2-3 levels deep: {'state_dict': {name:
#: tensor}}, tensors themselves add 2 for their argument tuples).
MAX_NESTING = 32

#: Most objects a checkpoint's structure may hold when its arrays are materialized (every dict entry,
#: list item and tensor counts once per time it is reached): 1,000,000. A state_dict holds a few entries
#: per tensor (emonet.pth: 16 tensors, about 150 objects with torch's `_metadata`).
MAX_OBJECTS = 10**6

#: Most dimensions a Caffe BlobShape may have: 32, Caffe's own `kMaxBlobAxes` (blob.hpp); AlexNet's blobs
#: have at most 4.
MAX_BLOB_DIMS = 32

#: Characters allowed per value in the MATLAB text dump: 32. writematrix writes at most 17 significant digits
#: (a float64 needs 17; e.g. '-1.2345678901234567e-05' is 23 characters); 32 leaves room for spaces.
MAX_CHARS_PER_VALUE = 32

#: Largest header of a .npy file: 10,000 bytes, numpy's own default limit (`numpy.lib.format._MAX_HEADER_SIZE`,
#: checked by `np.load` unless max_header_size is raised); genuine headers are 128 bytes.
MAX_NPY_HEADER_BYTES = 10_000


def max_line_chars(columns: int) -> int:
    """Longest line (in characters) accepted for a text matrix with `columns` values per line."""
    return columns * MAX_CHARS_PER_VALUE + 64
