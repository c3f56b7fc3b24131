"""sampling kernels (placeholder until implemented)."""

def sample_class_locations(*args, **kwargs):
    raise NotImplementedError("sample_class_locations")


def sample_patch_boxes(*args, **kwargs):
    raise NotImplementedError("sample_patch_boxes")


def crop_and_pad(*args, **kwargs):
    raise NotImplementedError("crop_and_pad")


