"""The inputs and the competing implementations of ``benches/kernels.py``.

Each case builds its input deterministically and maps implementation names to loaders; a loader
imports its library (outside the timed region) and returns ``fn(*inputs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PEER_MODULES = {"nnunetv2": "nnunetv2", "cc3d": "cc3d", "monai": "monai"}


@dataclass
class Case:
    make_inputs: Callable[[], tuple]
    impls: dict[str, Callable[[], Callable]]


# ---------------------------------------------------------------------------------------------
# synthetic volumes


def _grid(shape):
    return np.ogrid[tuple(slice(0, s) for s in shape)]


def body_volume(shape, seed=0) -> np.ndarray:
    """A CT-like float32 volume (1, *shape): an elliptic body of noisy tissue in zero air,
    with a few zero pockets (lungs/bowel gas) inside that hole filling must close."""
    rng = np.random.default_rng(seed)
    z, y, x = _grid(shape)
    cz, cy, cx = (s / 2 for s in shape)
    r2 = ((y - cy) / (shape[1] * 0.42)) ** 2 + ((x - cx) / (shape[2] * 0.45)) ** 2
    body = np.broadcast_to(r2 < 1.0, shape)
    data = np.zeros(shape, np.float32)
    data[body] = rng.normal(40, 30, size=int(body.sum())).astype(np.float32)
    for k in range(4):  # air pockets inside the body
        py, px = cy + (k - 1.5) * shape[1] * 0.12, cx + (k % 2 - 0.5) * shape[2] * 0.2
        pocket = ((z - cz) / (shape[0] * 0.3)) ** 2 + ((y - py) / (shape[1] * 0.06)) ** 2 + (
            (x - px) / (shape[2] * 0.06)
        ) ** 2 < 1
        data[pocket] = 0
    return data[None]


def organ_seg(shape, n_labels=3, seed=0, dtype=np.int16) -> np.ndarray:
    """Organ-like label map: nested/adjacent ellipsoids, a few percent of the volume per label."""
    z, y, x = _grid(shape)
    seg = np.zeros(shape, dtype)
    rng = np.random.default_rng(seed)
    for lab in range(1, n_labels + 1):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        r = [rng.uniform(0.12, 0.22) * s for s in shape]
        m = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
        seg[m] = lab
    return seg


def components_seg(shape, noisy: bool, seed=0) -> np.ndarray:
    """uint8 mask-as-seg (label 1): one large organ plus a few hundred blobs, or plus ~45,000
    isolated noise voxels (the 'noisy prediction' case)."""
    rng = np.random.default_rng(seed)
    seg = (organ_seg(shape, 1, seed, np.uint8) > 0).astype(np.uint8)
    if noisy:
        n = 45_000
        idx = rng.choice(seg.size, size=n, replace=False)
        seg.reshape(-1)[idx] = 1
    else:
        for _ in range(300):
            c = [rng.integers(3, s - 3) for s in shape]
            r = rng.integers(1, 3)
            seg[c[0] - r : c[0] + r + 1, c[1] - r : c[1] + r + 1, c[2] - r : c[2] + r + 1] = 1
    return seg


# ---------------------------------------------------------------------------------------------
# resampling


def _new_shape(shape, old_sp, new_sp):
    return tuple(int(round(o / n * s)) for s, o, n in zip(shape, old_sp, new_sp))


def _resample_case(shape, old_sp, new_sp, is_seg: bool) -> Case:
    def make():
        if is_seg:
            arr = organ_seg(shape, n_labels=4, dtype=np.int16)[None]
        else:
            arr = body_volume(shape)
        return arr, _new_shape(shape, old_sp, new_sp), old_sp, new_sp

    def oxunet():
        import oxunet.kernels as k

        fn = k.resample_seg if is_seg else k.resample_data
        return lambda a, ns, o, n: fn(a, ns, o, n)

    def reference():
        import oxunet.kernels.reference as r

        fn = r.resample_seg if is_seg else r.resample_data
        return lambda a, ns, o, n: fn(a, ns, o, n)

    def nnunetv2():
        from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

        order = 1 if is_seg else 3
        return lambda a, ns, o, n: resample_data_or_seg_to_shape(a, ns, o, n, is_seg, order, 0, None)

    return Case(make, {"oxunet": oxunet, "reference": reference, "nnunetv2": nnunetv2})


# ---------------------------------------------------------------------------------------------
# cropping, class locations, components, aggregation


def _crop_case(shape) -> Case:
    def make():
        return (body_volume(shape),)

    def oxunet():
        import oxunet.kernels as k

        return lambda d: k.crop_to_nonzero(d)

    def reference():
        import oxunet.kernels.reference as r

        return lambda d: r.crop_to_nonzero(d)

    def nnunetv2():
        from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

        return lambda d: crop_to_nonzero(d)

    return Case(make, {"oxunet": oxunet, "reference": reference, "nnunetv2": nnunetv2})


def _locations_case(shape) -> Case:
    classes = [1, 2, 3]

    def make():
        return (organ_seg(shape, 3, dtype=np.int16)[None],)

    def oxunet():
        import oxunet.kernels as k

        return lambda s: k.sample_class_locations(s, classes)

    def reference():
        import oxunet.kernels.reference as r

        return lambda s: r.sample_class_locations(s, classes)

    def nnunetv2():
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

        return lambda s: DefaultPreprocessor._sample_foreground_locations(s, classes, seed=1234)

    return Case(make, {"oxunet": oxunet, "reference": reference, "nnunetv2": nnunetv2})


def _largest_case(shape, noisy: bool) -> Case:
    def make():
        return (components_seg(shape, noisy),)

    def oxunet():
        import oxunet.kernels as k

        return lambda s: k.remove_all_but_largest_component(s, [1])

    def reference():
        import oxunet.kernels.reference as r

        return lambda s: r.remove_all_but_largest_component(s, [1])

    def nnunetv2():
        from nnunetv2.postprocessing.remove_connected_components import (
            remove_all_but_largest_component_from_segmentation,
        )

        return lambda s: remove_all_but_largest_component_from_segmentation(s, [1])

    def cc3d():
        import cc3d as c

        def run(s):  # same job: mask of the label, its largest component, the rest set to 0
            keep = c.largest_k(s == 1, k=1, connectivity=26)
            out = s.copy()
            out[(s == 1) & (keep == 0)] = 0
            return out

        return run

    return Case(make, {"oxunet": oxunet, "reference": reference, "nnunetv2": nnunetv2, "cc3d": cc3d})


def _aggregation_case(shape, patch, n_classes=3) -> Case:
    """Sliding-window bookkeeping with a trivial predictor (one precomputed random patch): the
    accumulation of Gaussian-weighted windows, normalisation and argmax."""

    def make():
        rng = np.random.default_rng(0)
        pred = rng.standard_normal((n_classes, *patch), dtype=np.float32)
        return (pred,)

    def starts_product():
        import itertools

        import oxunet.kernels as k

        steps = k.sliding_window_starts(shape, patch, 0.5)
        return list(itertools.product(*steps))

    def oxunet():
        import oxunet.kernels as k

        starts = starts_product()

        def run(pred):
            agg = k.Aggregator(n_classes, shape, patch, weighting="gaussian")
            for s in starts:
                agg.add(pred, s)
            return agg.argmax()

        return run

    def reference():
        import oxunet.kernels.reference as r

        starts = starts_product()

        def run(pred):
            agg = r.Aggregator(n_classes, shape, patch, weighting="gaussian")
            for s in starts:
                agg.add(pred, s)
            return agg.argmax()

        return run

    def nnunetv2():
        # nnUNetPredictor's CPU bookkeeping: fp16 accumulators, gaussian-weighted in-place adds,
        # division by the summed weights, argmax (the network call replaced by a constant patch).
        import torch
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

        torch.set_num_threads(__import__("os").cpu_count())
        steps = compute_steps_for_sliding_window(shape, patch, 0.5)
        import itertools

        slicers = [
            tuple([slice(None)] + [slice(s, s + p) for s, p in zip(start, patch)])
            for start in itertools.product(*steps)
        ]
        gaussian = compute_gaussian(tuple(patch), sigma_scale=1.0 / 8, value_scaling_factor=10, device=torch.device("cpu"))

        def run(pred):
            prediction = torch.from_numpy(pred)
            logits = torch.zeros((n_classes, *shape), dtype=torch.half)
            n_pred = torch.zeros(shape, dtype=torch.half)
            for sl in slicers:
                logits[sl] += prediction * gaussian
                n_pred[sl[1:]] += gaussian
            torch.div(logits, n_pred, out=logits)
            return logits.argmax(0).numpy()

        return run

    def monai():
        import torch
        from monai.inferers import sliding_window_inference

        torch.set_num_threads(__import__("os").cpu_count())

        def run(pred):
            p = torch.from_numpy(pred)[None]
            image = torch.zeros((1, 1, *shape))
            out = sliding_window_inference(
                image, patch, 1, lambda x: p.expand(x.shape[0], *p.shape[1:]), overlap=0.5, mode="gaussian", sigma_scale=0.125
            )
            return out[0].argmax(0).numpy()

        return run

    return Case(make, {"oxunet": oxunet, "reference": reference, "nnunetv2": nnunetv2, "monai": monai})


# ---------------------------------------------------------------------------------------------
# the case list (full sizes from the kernels issue; --quick shrinks them for a smoke run)


def _cases(quick: bool) -> dict[str, Callable[[], Case]]:
    q = 4 if quick else 1

    def s(*shape):
        return tuple(max(8, v // q) for v in shape)

    aniso = (s(80, 512, 512), (5.0, 0.7, 0.7), (1.5, 0.8, 0.8))
    iso = (s(160, 160, 160), (1.0, 1.0, 1.0), (1.3, 1.3, 1.3))
    patch = (32, 32, 32) if quick else (128, 128, 128)
    return {
        "resample data o3 aniso": lambda: _resample_case(*aniso, is_seg=False),
        "resample data o3 iso": lambda: _resample_case(*iso, is_seg=False),
        "resample seg o1 aniso": lambda: _resample_case(*aniso, is_seg=True),
        "resample seg o1 iso": lambda: _resample_case(*iso, is_seg=True),
        "crop_to_nonzero": lambda: _crop_case(s(200, 512, 512)),
        "class locations": lambda: _locations_case(s(200, 512, 512)),
        "aggregation 3 cls": lambda: _aggregation_case(s(160, 320, 320), patch),
        "keep-largest typical": lambda: _largest_case(s(200, 512, 512), noisy=False),
        "keep-largest noisy": lambda: _largest_case(s(200, 512, 512), noisy=True),
    }


def case_names() -> list[str]:
    return list(_cases(False))


def get_case(name: str, quick: bool) -> Case:
    return _cases(quick)[name]()
