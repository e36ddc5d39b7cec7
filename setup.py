"""emonet_tf: EmoNet (Kragel et al., 2019) in TensorFlow / Keras 3."""

from setuptools import find_packages, setup

EXTRAS = {
    # TFDS builders: testing utilities, dataset-as-folder loading and the `tfds build` command.
    "tfds": ["dill", "importlib_resources", "mlcroissant"],
    # Building the TFDS records and `emonet extract --runner beam` on a Beam runner (DirectRunner locally;
    # Dataflow/Flink/Spark). RunInference's TensorFlow model handler (apache_beam.ml.inference.
    # tensorflow_inference) imports tensorflow_hub, which needs tf-keras and imports pkg_resources:
    # setuptools 81 removed pkg_resources, hence the pin. pyarrow writes the Parquet shards.
    "beam": ["apache-beam", "tensorflow-hub", "tf-keras", "setuptools<81", "pyarrow"],
    # TensorBoard logs during training.
    "tensorboard": ["tensorboard"],
    # Plots: evaluation figures, video emotion time courses.
    "plot": ["matplotlib"],
    # Per-example predictions as Parquet (emonet_tf.predictions; CSV needs nothing).
    "parquet": ["pyarrow"],
    # The numerical reference for the parity tests only (the library never imports torch). emonet-py
    # itself is installed with --no-deps next to it (see README), because its declared dependencies
    # would replace this CPU torch with a CUDA build and add torchvision.
    "reference": ["torch==2.13.0"],
    # Test-only oracles and tools: a real ffmpeg binary for frame timing (imageio-ffmpeg ships one),
    # property-based fuzzing, and two independent pickle scanners as a second opinion on weight files.
    "oracles": ["imageio-ffmpeg", "hypothesis", "fickling", "picklescan"],
    # EmoNet compared with the brain (emonet_tf.brain, docs/brain.md): nilearn for HRFs, maskers and glass
    # brains (it brings pandas, read for BIDS events.tsv), nibabel for NIfTI, rsatoolbox for RDM export,
    # matplotlib for the plots. Never imported by the core.
    "brain": ["nilearn>=0.10", "nibabel>=5", "rsatoolbox", "matplotlib"],
}
# ruff: the linter and formatter .ci/run checks with (settings in pyproject.toml); pinned, because each
# ruff release may format differently.
EXTRAS["test"] = sorted(
    {
        "pytest",
        "pytest-timeout",
        "ruff==0.17.6",
        *EXTRAS["tfds"],
        *EXTRAS["beam"],
        *EXTRAS["tensorboard"],
        *EXTRAS["plot"],
        *EXTRAS["parquet"],
        *EXTRAS["reference"],
        *EXTRAS["oracles"],
        *EXTRAS["brain"],
    }
)
EXTRAS["all"] = sorted({p for k, v in EXTRAS.items() if k not in ("test", "reference", "oracles") for p in v})

setup(
    name="emonet_tf",
    version="0.1.0",
    description="EmoNet (Kragel, Reddan, LaBar & Wager, 2019) in TensorFlow/Keras 3: model, weight importers, "
    "TFDS builders, distributed training and serving",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["emonet_tf", "emonet_tf.*", "tfds_builders", "tfds_builders.*"]),
    package_data={"tfds_builders": ["*/README.md", "*/CITATIONS.bib", "*/checksums.tsv", "*/TAGS.txt"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.3",
        "tensorflow-datasets>=4.9",
        "numpy",
        # The field's estimators and metrics for evaluation.py and affect.py (ROC AUC, top-k, PLS, ridge,
        # stratified and nested CV); >= 1.4 for root_mean_squared_error and PLSRegression's coef_ layout.
        "scikit-learn>=1.4",
        "scipy",
        "opencv-python-headless",
        # PIL is the image decoder contract on the host (it stands for MATLAB's imread); PyAV (FFmpeg's
        # libraries, wheels include FFmpeg) reads videos with the stream's own timestamps and errors.
        "Pillow",
        "av",
        "absl-py",
        "tqdm",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["emonet=emonet_tf.cli:main"]},
)
