"""components kernels (placeholder until implemented)."""

def label_components(*args, **kwargs):
    raise NotImplementedError("label_components")


def remove_all_but_largest_component(*args, **kwargs):
    raise NotImplementedError("remove_all_but_largest_component")


def remove_small_components(*args, **kwargs):
    raise NotImplementedError("remove_small_components")


