"""``gs``: Controllable Guide-Space for generalizable face forgery detection (paper 003).

Model: a timm backbone (``features_only``; the paper's EfficientNet-B4 by
default, ``tf_efficientnet_lite0`` for CPU runs), global average pooling of
the deepest features, dropout, a linear embedding to ``embed_dim`` and L2
normalisation: the feature ``f`` on the unit hypersphere. A binary
classifier (one linear layer on ``f``, paper Eq. 4) gives ``cls_logit``.

Guide-space (paper Sec. 3.1), built once in ``__init__`` from ``guide_seed``
and kept as a buffer: a real guide ``g_0`` and one guide per forgery domain
``g_1..g_K`` with ``cos(g_0, g_k) = cos(theta)`` (Eq. 1) and the forgery
guides as far apart as possible (Eq. 2). Writing ``g_k = cos(theta) g_0 +
sin(theta) u_k`` with unit ``u_k`` orthogonal to ``g_0``, Eq. 2's energy
``sum_{i != j} exp(g_i . g_j / t)`` is, by Jensen's inequality, smallest when
``sum_k u_k = 0`` with all pairwise products equal: the regular simplex,
``u_i . u_j = -1 / (K - 1)``. It is built in closed form (the paper solves
the same constrained problem with Lagrange multipliers), so the pairwise
cosine of two forgery guides is ``cos^2(theta) - sin^2(theta) / (K - 1)``
(K = 1: one forgery guide).

Training objective (:func:`gs_loss`; our reading of Eqs. 3-6, whose
symbols are lost in the text copy):

- guide loss, Eq. 3: per face, the cross-entropy of ``f . G^T / tau`` (the
  cosines to all K + 1 guides over the temperature) against its guide: the
  real guide for real faces, ``g_{sigma(d)}`` for forgery domain ``d``;
  ``sigma`` is matched every step by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``) between the batch's mean
  feature of each forgery domain present and the forgery guides, cost
  ``-cos``; domains absent from the batch keep their previous guide when
  it is free (the matching is a buffer, so it resumes exactly);
- classification, Eq. 4: the cross-entropy of ``cls_logit`` (2 classes,
  the same as the paper's BCE on one score);
- A-DBM, Eqs. 5-6: a queue of the last ``queue_size`` (5120) features with
  their domains (buffers). Once ``adbm_start`` training steps have passed,
  each face's confidence is ``c_i = sum_{j in kNN} [d_j = d_i] e^{s_ij} /
  sum_{j in kNN} lambda_ij e^{s_ij}`` over its ``knn`` (55) most similar
  queue features (``s_ij`` cosine); ``lambda_ij = 1`` except for a fake
  face's *real* neighbours, ``lambda = adbm_real_weight`` (2): a fake lying
  among reals is worse than one lying among other forgeries. The face
  weights are ``w = softmax(-c / adbm_temp)`` over the batch (Eq. 6: low
  confidence, high weight; ``w_i = 1 / B`` before ``adbm_start``), and
  ``loss = sum_i w_i (CE_i + guide_weight * guide_i)`` (Eq. 9 without the
  decoupling terms). The current batch is enqueued after the loss.

The paper's ``theta``, ``tau``, ``k``, ``lambda`` and loss weights are
partly unreadable in the text copy: the defaults here are ours (``theta`` =
120 degrees, ``tau`` = 0.1, ``k`` = 55 from its Appendix C, ``lambda`` = 2,
``adbm_temp`` = 0.5, guide weight 1).

The decoupling module (SimMIM features, 500 clusters, push/pull losses
Eqs. 7-8) is left out: it needs a self-supervised face model that cannot be
had offline. The paper's ablation (Table 3) puts it second to the guides.

What the detector outputs as ``"logit"`` (N, 2), the score ffmask
evaluates: with ``score="guide"`` (default) ``[cos(f, g_0) / tau,
logsumexp_k cos(f, g_k) / tau]``, whose softmax is the probability the
guide softmax of Eq. 3 gives to any forgery guide: real when the feature
lies near the real guide, fake when near any forgery guide. With
``score="classifier"`` it is the binary classifier of Eq. 4 (trained in
both cases). The default is the guide score because the classifier, one
linear layer on unit-length features, learns slowly: in 20-step CPU smoke
runs (3 seeds) its held-out AUC was 0.64 / 0.92 / 1.00 where the guide
score's was 1.00 / 1.00 / 1.00. Both are returned (``"cls_logit"``,
``"guide_logit"``), with ``"feature"`` (N, embed_dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ffmask.models._config import ModelConfig, check_backbone_name, check_int, check_rate, normalise_mean_std
from ffmask.models.evaluators._timm import attach_backbone, backbone_features
from ffmask.models.evaluators.registry import OptimizerSpec, register_evaluator

NAME = "gs"
SCORES = ("guide", "classifier")


@dataclass(frozen=True)
class GsConfig(ModelConfig):
    """Architecture and guide-space settings of a :class:`GuideSpace`; stored in every checkpoint.

    backbone, img_size, drop_rate, mean, std : as for the other evaluators.
    domains : the forgery domains (manipulation names) in training-label
        order: domain k >= 1 of a batch is ``domains[k - 1]``. Set from the
        training data by the entry's ``configure``.
    embed_dim : feature dimension (>= number of guides).
    theta : angle between the real guide and every forgery guide, degrees.
    tau : temperature of the guide softmax.
    guide_seed : seeds the guide construction.
    queue_size : A-DBM feature queue length (paper 5120).
    knn : neighbours for the A-DBM confidence (paper 55).
    adbm_start : training step from which A-DBM re-weights faces (paper:
        the 10th epoch).
    adbm_temp : temperature of the weights' softmax over -confidence.
    adbm_real_weight : lambda of a fake face's real neighbours.
    guide_weight : weight of the guide loss.
    score : what ``"logit"`` is: "guide" (cosines to the guides) or
        "classifier" (Eq. 4's binary classifier).
    """

    model_name = NAME  # for messages (not a field)

    backbone: str = "efficientnet_b4"
    img_size: int = 224
    domains: tuple[str, ...] = ("fake",)
    embed_dim: int = 128
    theta: float = 120.0
    tau: float = 0.1
    guide_seed: int = 0
    queue_size: int = 5120
    knn: int = 55
    adbm_start: int = 0
    adbm_temp: float = 0.5
    adbm_real_weight: float = 2.0
    guide_weight: float = 1.0
    drop_rate: float = 0.2
    score: str = "guide"
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None

    def __post_init__(self) -> None:
        check_backbone_name(self.backbone)
        if isinstance(self.domains, str) or not all(isinstance(d, str) and d for d in self.domains):
            raise ValueError(f"domains must be a list of forgery domain names, got {self.domains!r}")
        domains = tuple(self.domains)
        if not domains or len(set(domains)) != len(domains):
            raise ValueError(f"domains must name at least one forgery domain, each once, got {list(domains)}")
        object.__setattr__(self, "domains", domains)
        for name, low in (("img_size", 32), ("embed_dim", 2), ("queue_size", 1), ("knn", 1), ("adbm_start", 0),
                          ("guide_seed", 0)):
            check_int(name, getattr(self, name), low)
        if self.embed_dim < len(domains) + 1:
            raise ValueError(f"embed_dim {self.embed_dim} is too small for {len(domains) + 1} guides")
        if not 0.0 < float(self.theta) <= 180.0:
            raise ValueError(f"theta must be an angle in (0, 180] degrees, got {self.theta!r}")
        for name in ("tau", "adbm_temp", "adbm_real_weight"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not float(self.guide_weight) >= 0:
            raise ValueError(f"guide_weight must be >= 0, got {self.guide_weight!r}")
        check_rate("drop_rate", self.drop_rate)
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        normalise_mean_std(self)


def build_guides(n_forgery: int, dim: int, theta_deg: float, seed: int = 0) -> torch.Tensor:
    """The guide embeddings: float32 (n_forgery + 1, dim), unit rows; row 0 the real guide.

    Every forgery guide is at ``theta_deg`` from the real guide; the forgery
    guides form a regular simplex around it (pairwise cosine ``cos^2 theta -
    sin^2 theta / (K - 1)``), the most spread arrangement under that
    constraint (see the module docstring). Deterministic in ``seed``.
    """
    k = int(n_forgery)
    if k < 1 or dim < k + 1:
        raise ValueError(f"need 1 <= forgery domains and dim >= domains + 1, got {k} domains in {dim} dimensions")
    g = torch.Generator().manual_seed(int(seed))
    q, _ = torch.linalg.qr(torch.randn(dim, k + 1, generator=g, dtype=torch.float64))
    real, basis = q[:, 0], q[:, 1:]  # orthonormal columns
    if k == 1:
        u = basis.T
    else:
        u = basis.T - basis.T.mean(0, keepdim=True)  # centred: a regular simplex in span(basis)
        u = u / u.norm(dim=1, keepdim=True)
    theta = math.radians(float(theta_deg))
    forged = math.cos(theta) * real[None] + math.sin(theta) * u
    guides = torch.cat([real[None], forged], 0)
    return (guides / guides.norm(dim=1, keepdim=True)).float()


class GuideSpace(nn.Module):
    """The guide-space detector; see the module docstring.

    forward(x): x float (N, 3, img_size, img_size) RGB in [0, 1] -> {"logit":
    (N, 2), "cls_logit": (N, 2), "guide_logit": (N, 2), "feature": (N, D)
    unit rows}.

    Buffers (saved in checkpoints, so a resumed run continues exactly):
    ``guides`` (K + 1, D), ``assignment`` (K,) the forgery guide (0-based
    among the forgery guides) of each domain, ``queue`` (Q, D),
    ``queue_domain`` (Q,) (-1: empty slot), ``queue_ptr`` and ``steps`` ().
    """

    map_size = None  # no map head

    def __init__(self, config: GsConfig) -> None:
        super().__init__()
        channels = attach_backbone(self, config)
        self.dropout = nn.Dropout(config.drop_rate)
        self.embed = nn.Linear(channels[-1], config.embed_dim)
        self.classifier = nn.Linear(config.embed_dim, 2)
        k, d = len(config.domains), config.embed_dim
        self.register_buffer("guides", build_guides(k, d, config.theta, config.guide_seed))
        self.register_buffer("assignment", torch.arange(k, dtype=torch.int64))
        self.register_buffer("queue", torch.zeros(config.queue_size, d))
        self.register_buffer("queue_domain", torch.full((config.queue_size,), -1, dtype=torch.int64))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @property
    def n_domains(self) -> int:
        """K, the number of forgery domains (guides besides the real one)."""
        return len(self.config.domains)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float32 (N, D) unit-length features of images x (N, 3, S, S) in [0, 1]."""
        deepest = backbone_features(self, x)[-1]
        return F.normalize(self.embed(self.dropout(deepest.mean(dim=(2, 3)))).float(), dim=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        cls_logit = self.classifier(f)
        cos = f @ self.guides.T / self.config.tau
        guide_logit = torch.stack([cos[:, 0], torch.logsumexp(cos[:, 1:], dim=1)], dim=1)
        logit = cls_logit if self.config.score == "classifier" else guide_logit
        return {"logit": logit, "cls_logit": cls_logit, "guide_logit": guide_logit, "feature": f}

    @torch.no_grad()
    def match_guides(self, f: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Hungarian matching of the batch's forgery domains to the forgery guides; updates ``assignment``.

        f : (N, D) features; domain : int64 (N,) 0 real, k >= 1 forgery domain
        k. For each forgery domain present, its mean feature (normalised) is
        matched to a forgery guide minimising the summed ``-cos``; absent
        domains keep their guide when no present domain took it, else get a
        free one (lowest index first). Returns the new ``assignment`` (K,).
        """
        from scipy.optimize import linear_sum_assignment

        k = self.n_domains
        present = [d for d in range(1, k + 1) if bool((domain == d).any())]
        old = self.assignment.tolist()
        new = [-1] * k
        if present:
            means = torch.stack([F.normalize(f[domain == d].float().mean(0), dim=0) for d in present])
            cost = -(means @ self.guides[1:].T.float()).cpu().double().numpy()
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                new[present[r] - 1] = int(c)
        taken = {c for c in new if c >= 0}
        for d in range(k):  # absent domains: keep the old guide if free
            if new[d] < 0 and old[d] not in taken:
                new[d] = old[d]
                taken.add(old[d])
        free = iter(c for c in range(k) if c not in taken)
        for d in range(k):
            if new[d] < 0:
                new[d] = next(free)
        self.assignment.copy_(torch.tensor(new, dtype=torch.int64))
        return self.assignment

    @torch.no_grad()
    def confidence(self, f: torch.Tensor, domain: torch.Tensor) -> Optional[torch.Tensor]:
        """A-DBM confidence (N,) in [0, 1] of each face against the queue, or None while it is empty."""
        filled = self.queue_domain >= 0
        n_filled = int(filled.sum())
        if n_filled == 0:
            return None
        bank, bank_dom = self.queue[filled], self.queue_domain[filled]
        sim = f.float() @ bank.T  # (N, Q')
        top, idx = sim.topk(min(self.config.knn, n_filled), dim=1)
        nd = bank_dom[idx]  # (N, k) neighbour domains
        same = nd == domain[:, None]
        lam = torch.ones_like(top)
        lam[(domain[:, None] > 0) & (nd == 0)] = self.config.adbm_real_weight
        e = torch.exp(top)  # cosines in [-1, 1]: no overflow
        return (e * same).sum(1) / (e * lam).sum(1)

    @torch.no_grad()
    def enqueue(self, f: torch.Tensor, domain: torch.Tensor) -> None:
        """Put the batch's features and domains into the ring queue (oldest overwritten)."""
        q = self.config.queue_size
        f, domain = f.detach().float()[-q:], domain[-q:]
        pos = (int(self.queue_ptr) + torch.arange(f.shape[0], device=f.device)) % q
        self.queue[pos] = f.to(self.queue.dtype)
        self.queue_domain[pos] = domain.to(torch.int64)
        self.queue_ptr.fill_((int(self.queue_ptr) + f.shape[0]) % q)


def gs_loss(model: GuideSpace, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The guide-space objective of one training step (see the module docstring).

    Reads ``batch["label"]`` and ``batch["domain"]`` (int64 (N,): 0 real,
    k >= 1 forgery domain k); updates the model's guide matching, queue and
    step counter (training only). Returns the total and the detached parts
    {"cls", "guide", "conf" (mean A-DBM confidence; only once it applies),
    "total"}.
    """
    f, cls_logit = outputs["feature"].float(), outputs["cls_logit"].float()
    labels, domain = batch["label"], batch["domain"]
    n, k = f.shape[0], model.n_domains
    if labels.shape != (n,) or domain.shape != (n,):
        raise ValueError(f"label and domain must be ({n},), got {tuple(labels.shape)}, {tuple(domain.shape)}")
    if bool(((domain == 0) != (labels == 0)).any()) or int(domain.max()) > k or int(domain.min()) < 0:
        raise ValueError(f"domain must be 0 for real faces and 1..{k} for fakes ({list(model.config.domains)})")
    assignment = model.match_guides(f.detach(), domain)
    target = torch.where(domain > 0, assignment[(domain - 1).clamp(min=0)] + 1, torch.zeros_like(domain))
    guide = F.cross_entropy(f @ model.guides.T.float() / model.config.tau, target, reduction="none")
    cls = F.cross_entropy(cls_logit, labels, reduction="none")
    conf = None
    if int(model.steps) >= model.config.adbm_start:
        conf = model.confidence(f.detach(), domain)
    if conf is None:
        w = torch.full((n,), 1.0 / n, device=f.device)
    else:
        w = torch.softmax(-conf / model.config.adbm_temp, dim=0)
    total = (w * (cls + model.config.guide_weight * guide)).sum()
    model.enqueue(f, domain)
    model.steps += 1
    parts = {"cls": cls.mean().detach(), "guide": guide.mean().detach()}
    if conf is not None:
        parts["conf"] = conf.mean().detach()
    parts["total"] = total.detach()
    return total, parts


def configure(table: Mapping[str, np.ndarray], indices: np.ndarray) -> dict[str, Any]:
    """``{"domains": sorted manipulation names of the training fakes}`` (the loop's domain order)."""
    from ffmask.train.evaluator import domain_labels  # the loop numbers the batch's domains the same way

    _, domains = domain_labels(table, indices)
    if not domains:
        raise ValueError("gs needs fake training faces to build its forgery guides")
    return {"domains": domains}


@register_evaluator(NAME, loss=gs_loss, inputs=("domain",), configure=configure, map_head=False,
                    optimizer=OptimizerSpec(name="adam", lr=2e-4, weight_decay=1e-5),
                    description="guide-space (paper 003): unit features pulled to fixed real/forgery guides "
                                "(Hungarian-matched), A-DBM re-weighting, BCE; no map head, no decoupling module")
def gs(**cfg: Any) -> GuideSpace:
    """The ``gs`` evaluator; keyword arguments are :class:`GsConfig` fields."""
    if "domains" in cfg and isinstance(cfg["domains"], list):
        cfg["domains"] = tuple(cfg["domains"])
    return GuideSpace(GsConfig.from_dict(cfg))
