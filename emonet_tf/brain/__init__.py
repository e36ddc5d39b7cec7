"""EmoNet compared with the brain: the fMRI and behavioural analyses of Kragel et al. (2019) as functions.

Optional extra: ``pip install -e '.[brain]'`` (nilearn, nibabel, rsatoolbox, matplotlib). Importing this
package or any of its modules never imports TensorFlow; features come in as numpy arrays (e.g. from
``emonet_tf.EmoNet(model).activations(images, "fc8")``). Modules (import them directly, nothing is
re-exported here):

* ``emonet_tf.brain.timing``: stimulus to scan time. Per-frame features with presentation times onto the
  TR grid (mean within TR or interpolation), the canonical HRF (SPM/Glover, nilearn) or FIR delays, the
  order of resampling and convolution as a named choice, BIDS ``events.tsv`` image designs, film designs
  with run offsets and frame-rate correction.
* ``emonet_tf.brain.io``: BOLD in and out: 4-D NIfTI through a nilearn masker (or plain time x voxel
  arrays) to ``[n_scans, n_voxels]`` and values back to NIfTI; the MNI152 brain mask nilearn ships.
* ``emonet_tf.brain.models``: encoding and decoding models (PLS, ridge with per-voxel alpha), CV splitters
  that respect time and people, r / R^2 / predictions / weights, noise ceilings, permutation p-values.
* ``emonet_tf.brain.experiment1``: the paper's experiment-I analysis (LOSO PLS voxels -> fc8) as one call.
* ``emonet_tf.brain.rsa``: RDMs of any layer, comparison with brain and behaviour RDMs, bootstrap,
  rsatoolbox export.
* ``emonet_tf.brain.behaviour``: discriminable clusters of a confusion matrix, components for 95 %
  variance, clip-level classification from pooled frame features.
* ``emonet_tf.brain.controls``: control encoders (ImageNet AlexNet, seeded random AlexNet) and variance
  partitioning.
* ``emonet_tf.brain.plots``: r maps on a glass brain, RDM heat maps, confusion matrices (matplotlib Agg).
"""
