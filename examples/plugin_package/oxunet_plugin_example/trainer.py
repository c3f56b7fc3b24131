"""``-tr oxunet_plugin_example.trainer:PluginTrainer``: oxunet's trainer with two hooks replaced."""

from __future__ import annotations

from oxunet.training.trainer import Trainer

from .loss import DiceFocalLoss


class PluginTrainer(Trainer):
    # the starting TrainerConfig (every -tr/CLI override still applies)
    default_config = {"deep_supervision": False, "initial_lr": 1e-3, "optimizer": "adamw"}

    def architecture(self) -> dict:
        """Recorded in every checkpoint: `oxunet predict` builds TinyConvNet through the entry point."""
        dim = len(self.ctx.patch_size)
        return {"network_class_name": "TinyConvNet",
                "arch_kwargs": {"features": 8, "conv_op": f"torch.nn.Conv{dim}d"},
                "_kw_requires_import": ["conv_op"]}

    def build_loss(self, num_outputs, ds_weights):
        return DiceFocalLoss()
