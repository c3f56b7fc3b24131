"""Shared test settings: a capped hypothesis profile so the default suite stays quick on 2 cores."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("OXUNET_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("OXUNET_HYPOTHESIS_PROFILE", "default"))


# --- fixtures shared by the inference test modules ---------------------------------------------

import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """torch on one thread for the test (tiny networks: threads only add contention on a shared
    machine). Modules apply it to every test with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny raw dataset with plans (``inference_models.tiny_project``) and a two-fold oxunet model
    folder ``proj["model"]`` trained nowhere (seeded random weights); one per test module."""
    from inference_models import tiny_project, write_model_folder

    root = tmp_path_factory.mktemp("pred")
    proj = tiny_project(root)
    proj["root"] = root
    proj["model"] = write_model_folder(root / "models" / "nnUNetTrainer__nnUNetPlans__3d_fullres", proj["plans"],
                                       proj["dataset_json"], "3d_fullres", folds=(0, 1), nnunet=False, seed=11)
    return proj
