"""Constants shared by several stages (one home, so planning, preprocessing, augmentation and the
reference kernels cannot drift apart). Pure Python, imports nothing."""

# nnunetv2.configuration.ANISO_THRESHOLD. Planning: an axis is "anisotropic" when its spacing is
# more than this times the next largest; resampling: separate-z above this spacing ratio;
# augmentation: a 3D patch this much longer in-plane than along axis 0 is augmented slice-wise
# ("dummy 2D").
ANISO_THRESHOLD = 3
