"""Constants shared by several stages (one home, so planning, preprocessing, augmentation and the
reference kernels cannot drift apart). Pure Python, imports nothing."""

# nnunetv2.configuration.ANISO_THRESHOLD. Planning: an axis is "anisotropic" when its spacing is
# more than this times the next largest; resampling: separate-z above this spacing ratio;
# augmentation: a 3D patch this much longer in-plane than along axis 0 is augmented slice-wise
# ("dummy 2D").
ANISO_THRESHOLD = 3

# nnUNetTrainer.oversample_foreground_percent: the fraction of each batch (its last samples)
# forced to contain foreground.
OVERSAMPLE_FOREGROUND_PERCENT = 0.33

# nnUNetPredictor's tile_step_size: sliding-window step as a fraction of the patch size.
SLIDING_WINDOW_STEP_SIZE = 0.5

# nnunetv2.inference.sliding_window_prediction.compute_gaussian defaults: the Gaussian's sigma as a
# fraction of the patch size, and the factor its values are scaled by before normalisation.
GAUSSIAN_SIGMA_SCALE = 1.0 / 8
GAUSSIAN_VALUE_SCALING_FACTOR = 10

# DefaultPreprocessor._sample_foreground_locations: at least this many foreground locations per
# class are stored, or this fraction of the class's voxels if that is more.
CLASS_LOCATIONS_MIN_SAMPLES = 10000
CLASS_LOCATIONS_MIN_COVERAGE = 0.01
