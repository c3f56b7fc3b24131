"""cropping kernels (placeholder until implemented)."""

def crop_to_nonzero(*args, **kwargs):
    raise NotImplementedError("crop_to_nonzero")


