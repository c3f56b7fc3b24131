"""The demo: a synthetic dataset and the whole pipeline on it (``oxunet demo``)."""

from .run import DemoBudget, DemoError, DemoResult, run_demo
from .synthetic import DEMO_DATASET, make_demo_dataset

__all__ = ["DEMO_DATASET", "DemoBudget", "DemoError", "DemoResult", "make_demo_dataset", "run_demo"]
