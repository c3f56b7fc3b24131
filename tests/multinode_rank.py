"""One rank of the two-"node" torchrun test (tests/test_multinode.py): joins the process group torchrun
describes, trains a few iterations on CPU (gloo) and saves its weights beside its node's results folder."""

import sys

import torch

from oxunet.dataset import resolve_paths
from oxunet.training import distributed as ddp
from oxunet.training.config import TrainerConfig
from oxunet.training.trainer import Trainer

pre, results, out = sys.argv[1:4]
ddp.init_from_env("cpu")
paths = resolve_paths(preprocessed_dir=pre, results_dir=results, environ={})
cfg = TrainerConfig(name="multinode", epochs=1, iterations_per_epoch=3, val_iterations=1, num_workers=0,
                    precision="fp32", seed=None, batch_size=2, progress_plot=False)
tr = Trainer("900", "3d_fullres", 0, paths=paths, config=cfg, quiet=True)
tr.run(validate=False)
torch.save({"rank": ddp.rank(), "world": ddp.world_size(), "results": results, "seed": tr.seed,
            "weights": tr.network.state_dict()}, f"{out}/rank{ddp.rank()}.pt")
torch.distributed.destroy_process_group()
