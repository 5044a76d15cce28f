"""``rfm``: Representative Forgery Mining (Wang & Deng, CVPR 2021), a detector without a map head.

Model: a timm backbone (``features_only``; the paper's detector is Xception,
the issue asks for EfficientNet-B4, ``efficientnet_b4`` by default and
``tf_efficientnet_lite0`` for CPU runs), global average pooling of the
deepest features, dropout, one linear layer -> 2 logits (real, fake).
``forward(x)`` returns ``{"logit": (N, 2)}`` only (``map_head=False``: the
training loop refuses ``--map`` for it).

Training (:data:`ENTRY` fields):

- ``augment`` = Suspicious Forgeries Erasing on every training batch
  (:func:`ffmask.models.fam.sfe_augment`): the FAM of the current model (eval
  mode) on the batch, then ``erase_blocks`` (3) blocks per face at the
  top FAM points not yet erased, each ``randint(1, 120) x randint(1, 120)``
  pixels at 224 px (scaled with ``img_size``), filled with uniform noise
  in [-1, 1] of the normalised input; ``erase_prob`` (1.0) of the faces;
- loss = flooding (Ishida et al.) of the cross-entropy:
  ``|CE - b| + b`` with ``b = 0.04`` (the paper's);
- Adam, lr 2e-4, no weight decay, batches balanced real/fake (the loop's).
  The paper keeps the learning rate fixed; ffmask's loop decays it
  (cosine schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn

from ffmask.models._config import ModelConfig, check_backbone_name, check_int, check_rate, normalise_mean_std
from ffmask.models.evaluators._timm import attach_backbone, backbone_features, image_cross_entropy
from ffmask.models.evaluators.registry import OptimizerSpec, register_evaluator

NAME = "rfm"
FLOOD = 0.04


@dataclass(frozen=True)
class RfmConfig(ModelConfig):
    """Architecture and SFE settings of an :class:`Rfm`; stored verbatim in every checkpoint.

    backbone : timm model name supporting ``features_only``.
    img_size : square input side.
    drop_rate : dropout before the classifier.
    erase_blocks : SFE blocks per face (paper N = 3).
    erase_prob : probability that SFE erases a face (paper p = 1.0).
    mean, std : input normalisation; None takes the backbone's timm values.
    """

    model_name = NAME  # for messages (not a field)

    backbone: str = "efficientnet_b4"
    img_size: int = 224
    drop_rate: float = 0.2
    erase_blocks: int = 3
    erase_prob: float = 1.0
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None

    def __post_init__(self) -> None:
        check_backbone_name(self.backbone)
        for name, low in (("img_size", 32), ("erase_blocks", 0)):
            check_int(name, getattr(self, name), low)
        check_rate("drop_rate", self.drop_rate)
        if not 0.0 <= self.erase_prob <= 1.0:
            raise ValueError(f"erase_prob must be in [0, 1], got {self.erase_prob!r}")
        normalise_mean_std(self)


class Rfm(nn.Module):
    """The RFM detector; see the module docstring.

    forward(x): x float (N, 3, img_size, img_size) RGB in [0, 1] (normalised
    inside) -> {"logit": (N, 2)}.
    """

    map_size = None  # no map head

    def __init__(self, config: RfmConfig) -> None:
        super().__init__()
        channels = attach_backbone(self, config)
        self.dropout = nn.Dropout(config.drop_rate)
        self.classifier = nn.Linear(channels[-1], 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        deepest = backbone_features(self, x)[-1]
        return {"logit": self.classifier(self.dropout(deepest.mean(dim=(2, 3))))}


def flooded_ce_loss(model: nn.Module, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
                    flood: float = FLOOD) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Flooding of the cross-entropy: ``|CE - flood| + flood`` (paper: 0.04).

    Below the flood level the gradient ascends, so the training loss hovers
    around ``flood`` instead of reaching zero. Returns the total and the
    detached parts {"cls": CE, "total": the flooded loss}.
    """
    ce = image_cross_entropy(outputs["logit"], batch["label"])
    total = (ce - flood).abs() + flood
    return total, {"cls": ce.detach(), "total": total.detach()}


def sfe(model: "Rfm", batch: dict, generator: torch.Generator) -> dict:
    """The ``augment`` of ``rfm``: Suspicious Forgeries Erasing of ``batch["image"]``.

    ``batch["image"]`` is the model's input, float (B, 3, img_size, img_size)
    in [0, 1]; a new batch dict with the erased images is returned.
    """
    from ffmask.models.fam import sfe_augment

    images, _ = sfe_augment(model, batch["image"], generator, blocks=model.config.erase_blocks,
                            prob=model.config.erase_prob, mean=model.mean.flatten().tolist(),
                            std=model.std.flatten().tolist())
    return {**batch, "image": images}


@register_evaluator(NAME, loss=flooded_ce_loss, loss_kwargs={"flood": FLOOD}, augment=sfe, map_head=False,
                    optimizer=OptimizerSpec(name="adam", lr=2e-4, weight_decay=0.0),
                    description="RFM (Wang & Deng): detector + Suspicious Forgeries Erasing by its FAM, flooding "
                                "0.04, Adam 2e-4; no map head")
def rfm(**cfg: Any) -> Rfm:
    """The ``rfm`` evaluator; keyword arguments are :class:`RfmConfig` fields."""
    return Rfm(RfmConfig.from_dict(cfg))
