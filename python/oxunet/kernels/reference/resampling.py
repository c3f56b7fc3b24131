"""resampling kernels (placeholder until implemented)."""

def resample_data(*args, **kwargs):
    raise NotImplementedError("resample_data")


def resample_seg(*args, **kwargs):
    raise NotImplementedError("resample_seg")


