"""sliding_window kernels (placeholder until implemented)."""

def sliding_window_starts(*args, **kwargs):
    raise NotImplementedError("sliding_window_starts")


def gaussian_importance_map(*args, **kwargs):
    raise NotImplementedError("gaussian_importance_map")


class Aggregator:
    def __init__(self, *a, **k):
        raise NotImplementedError("Aggregator")


