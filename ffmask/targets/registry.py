"""Target methods by CLI name: what each needs and what it returns.

A method is registered once under the name users type after ``--method``.
Its :class:`MethodSpec` tells the pipeline what to feed it and how to store
its output:

==========  =====================  ======================================
input       called as              needs
==========  =====================  ======================================
pair        ``fn(real, fake)``     the fake and its original, same crop
image       ``fn(image)``          one crop (fake or real)
mask_video  ``fn(mask_frame)``     the dataset's mask-video frame, same crop
==========  =====================  ======================================

==========  ========================  ==================================
kind        returns                   stored in shards as
==========  ========================  ==================================
mask        bool (H, W)               uint8 {0, 1}
continuous  float32 (H, W) in [0, 1]  float16 (H, W)
noise       float32 (H, W, 3)         float16 (H, W, 3)
==========  ========================  ==================================

A pair method registered with ``landmarks=True`` also accepts the face's
68 landmarks in crop pixels as ``fn(real, fake, landmarks=points)``; the
pipeline passes them when the detector found them (``None`` otherwise), and
runs the landmark predictor only when some requested method asks for them.

A method's other special needs are fields of its entry too, so the pipeline
never tests a method's name:

- ``item_kwargs(item, options) -> dict``: keyword arguments taken from the
  video item and the run options, e.g. ``noise``'s σ by compression.
- ``model(options) -> model``: a *model-backed* method (``focus``,
  ``fam``; its checkpoint is ``options.checkpoint_for(name)``). The
  model is loaded once per worker process, and ``fn(model, images, labels)``
  runs on a batch of faces (uint8 (N, S, S, 3), int (N,) labels) and
  returns ``(maps, extras)``: float32 (N, g, g) maps in [0, 1] at the
  model's own grid g <= S (the shard stores the grid, readers upsample it)
  and per-face float32 (N,) scalars named in ``extras``.
- ``check(options)``: a cheap validation of the run options in the parent
  process (a missing or untrusted checkpoint fails before any work) that
  never loads the model.

- ``uses``: other methods whose result for the same face the method
  accepts as keyword arguments named after them, e.g. ``hull`` takes
  ``mscc=<mask>`` and uses it as a candidate instead of computing MSCC
  again. When both are requested, the pipeline computes the used method
  first (:func:`dependency_order`) and passes its result; otherwise the
  method computes it itself, so it stays a pure function.

Model-backed methods are not pure functions, so :data:`METHODS` leaves them
out; :func:`get_method` and :func:`available_methods` include them.

Some methods take one parameter written after ``@``: ``diff@0.05`` is the
difference mask at threshold 0.05, ``noise@10`` the noise residual with
sigma 10. Those are registered as families with :func:`register_family`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ffmask.targets._validate import check_fraction, check_positive
from ffmask.targets.comparison import diff_map, diff_mask, ssim_map
from ffmask.targets.mscc import mscc_mask
from ffmask.targets.noise import noise_map, sigma_for_compression
from ffmask.targets.official import official_mask

__all__ = [
    "INPUTS",
    "KINDS",
    "METHODS",
    "MethodSpec",
    "available_methods",
    "dependency_order",
    "get_method",
    "register_family",
    "register_method",
]

INPUTS = ("pair", "image", "mask_video")
KINDS = ("mask", "continuous", "noise")
_STORE_DTYPE = {
    "mask": np.dtype(np.uint8),
    "continuous": np.dtype(np.float16),
    "noise": np.dtype(np.float16),
}
_FORBIDDEN = set("@,/ \t\n")


@dataclass(frozen=True)
class MethodSpec:
    """One target method.

    Attributes
    ----------
    name : str
        The CLI name, e.g. ``"mscc"`` or ``"diff@0.1"``; also the shard
        dataset name ``/maps/<name>``.
    fn : callable
        The function; see `input` for how it is called.
    kind : {"mask", "continuous", "noise"}
        What it returns (see the module docstring).
    input : {"pair", "image", "mask_video"}
        What it is fed.
    landmarks : bool
        The method accepts ``landmarks=`` (float (68, 2) x, y in crop
        pixels, or None) as an optional keyword.
    item_kwargs : callable or None
        ``item_kwargs(item, options) -> dict`` of keyword arguments for `fn`
        taken from the video item (``item.compression`` ...) and the run
        options (a :class:`ffmask.pipeline.JobSpec`).
    model : callable or None
        ``model(options)`` loads the model of a model-backed method (once per
        worker process); `fn` is then ``fn(model, images, labels) ->
        (maps, extras)`` over a batch of faces.
    extras : tuple of str
        Per-face float32 scalars a model-backed method returns beside its maps.
    check : callable or None
        ``check(options)`` validates the run options cheaply (no model load);
        raises an :class:`ffmask.errors.FFMaskError` subclass or ValueError.
    gray : bool
        A mask-video method that reads only the frame's grey level: `fn`
        also accepts uint8 ``(H, W)`` equal to OpenCV's RGB->GRAY of the RGB
        frame and returns the same. When every requested mask-video method
        says so, the pipeline decodes mask videos straight to grey.
    uses : tuple of str
        Other per-face methods whose result for the same face `fn` accepts
        as a keyword argument of that name (``fn(real, fake, mscc=mask)``);
        passed when that method is requested too (the pipeline computes it
        first, :func:`dependency_order`), else `fn` computes what it needs
        itself.
    identity : tuple
        What makes two names the same map: empty for a plain method (its
        name), ``(family, parameters)`` for a parametrised one, so that
        ``diff@0.1`` and ``diff@0.10`` are one map (see :attr:`key`).
    """

    name: str
    fn: Callable[..., Any]
    kind: str
    input: str = "pair"
    landmarks: bool = False
    item_kwargs: Optional[Callable[[Any, Any], dict]] = None
    model: Optional[Callable[[Any], Any]] = None
    extras: tuple = ()
    check: Optional[Callable[[Any], None]] = None
    gray: bool = False
    uses: tuple = ()
    identity: tuple = ()

    @property
    def key(self) -> tuple:
        """Equal for two names that compute the same map (``diff@0.1``, ``diff@0.10``)."""
        return self.identity or (self.name,)

    @property
    def batched(self) -> bool:
        """True for a model-backed method, computed over batches of faces."""
        return self.model is not None

    @property
    def paired(self) -> bool:
        """True when the method needs the original: called ``fn(real, fake)``."""
        return self.input == "pair"

    @property
    def store_dtype(self) -> np.dtype:
        """The shard dtype: uint8 for masks, float16 otherwise."""
        return _STORE_DTYPE[self.kind]

    def __call__(self, *images: np.ndarray) -> np.ndarray:
        return self.fn(*images)


@dataclass(frozen=True)
class _Family:
    name: str
    factory: Callable[[str], Callable[..., np.ndarray]]
    kind: str
    input: str
    arg: str


_SPECS: dict[str, MethodSpec] = {}
_FAMILIES: dict[str, _Family] = {}

#: CLI name -> function for every plain (parameter-free) registered method.
#: Pair methods are called ``fn(real, fake)``, image methods ``fn(image)``,
#: mask-video methods ``fn(mask_frame)``. Parametrised names such as
#: ``diff@0.05`` go through :func:`get_method`.
METHODS: dict[str, Callable[..., np.ndarray]] = {}


def _check_spec_fields(name: str, kind: str, input: str) -> None:
    if not isinstance(name, str) or not name or _FORBIDDEN & set(name):
        raise ValueError(
            f"method name must be a non-empty string without '@', ',', '/' or spaces, got {name!r}"
        )
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if input not in INPUTS:
        raise ValueError(f"input must be one of {', '.join(INPUTS)}; got {input!r}")


def register_method(
    name: str,
    fn: Callable[..., np.ndarray] | None = None,
    *,
    kind: str,
    input: str = "pair",
    landmarks: bool = False,
    item_kwargs: Optional[Callable[[Any, Any], dict]] = None,
    model: Optional[Callable[[Any], Any]] = None,
    extras: tuple = (),
    check: Optional[Callable[[Any], None]] = None,
    gray: bool = False,
    uses: tuple = (),
    replace: bool = False,
):
    """Register `fn` under the CLI name `name`; usable as a decorator.

    ::

        @register_method("hull", kind="mask")
        def hull_mask(real, fake): ...

    Parameters
    ----------
    name : str
        CLI name; no '@', ',', '/' or whitespace.
    fn : callable, optional
        The method. Omit it to get a decorator.
    kind : {"mask", "continuous", "noise"}
    input : {"pair", "image", "mask_video"}, optional
    landmarks : bool, optional
        `fn` accepts an optional ``landmarks=`` keyword (crop pixels).
    item_kwargs, model, extras, check, gray, uses : optional
        See :class:`MethodSpec`. A method with a `model` is an image method
        of kind "continuous".
    replace : bool, optional
        Allow overwriting an existing registration.

    Returns
    -------
    callable
        `fn` itself (or the decorator).
    """
    _check_spec_fields(name, kind, input)
    if landmarks and input != "pair":
        raise ValueError(f"method {name!r}: only pair methods take landmarks")
    for what, value in (("item_kwargs", item_kwargs), ("model", model), ("check", check)):
        if value is not None and not callable(value):
            raise ValueError(f"method {name!r}: {what} must be callable, got {type(value).__name__}")
    if model is not None and (input != "image" or kind != "continuous"):
        raise ValueError(f"method {name!r}: a model-backed method is a continuous image method")
    if isinstance(extras, str) or not all(isinstance(e, str) and e for e in extras):
        raise ValueError(f"method {name!r}: extras must be a tuple of names, got {extras!r}")
    if extras and model is None:
        raise ValueError(f"method {name!r}: only model-backed methods return extras")
    if gray and input != "mask_video":
        raise ValueError(f"method {name!r}: only mask-video methods read grey frames")
    if isinstance(uses, str) or not all(isinstance(u, str) and u.isidentifier() for u in uses):
        raise ValueError(f"method {name!r}: uses must be a tuple of method names that are Python identifiers, "
                         f"got {uses!r}")
    if name in uses:
        raise ValueError(f"method {name!r} cannot use its own result")
    if uses and model is not None:
        raise ValueError(f"method {name!r}: a model-backed method runs on batches and uses no other method")

    def add(f: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if not callable(f):
            raise ValueError(f"method {name!r} must be callable, got {type(f).__name__}")
        if name in _SPECS and not replace:
            raise ValueError(f"method {name!r} is already registered")
        _SPECS[name] = MethodSpec(name, f, kind, input, bool(landmarks), item_kwargs, model, tuple(extras), check,
                                 bool(gray), tuple(uses))
        if model is None:
            METHODS[name] = f
        else:
            METHODS.pop(name, None)
        return f

    return add if fn is None else add(fn)


def register_family(
    name: str,
    factory: Callable[[str], Callable[..., np.ndarray]],
    *,
    kind: str,
    input: str = "pair",
    arg: str = "X",
    replace: bool = False,
) -> None:
    """Register parametrised names ``name@<arg>``.

    `factory` receives the text after '@' and returns the method; it raises
    ``ValueError`` for a bad parameter. `arg` is the placeholder shown by
    :func:`available_methods` (e.g. ``"T"`` for ``diff@T``).
    """
    _check_spec_fields(name, kind, input)
    if name in _FAMILIES and not replace:
        raise ValueError(f"method family {name!r}@ is already registered")
    _FAMILIES[name] = _Family(name, factory, kind, input, arg)


def available_methods() -> list[str]:
    """All CLI method names, parametrised ones as ``name@ARG`` (sorted)."""
    names = set(_SPECS) | {f"{f.name}@{f.arg}" for f in _FAMILIES.values()}
    return sorted(names)


def dependency_order(specs) -> list:
    """``specs`` (MethodSpec) reordered so that each comes after the requested methods it uses.

    Otherwise the given order is kept: each step takes the first method
    whose used methods are placed already or not requested (a method
    computes an unrequested one itself).

    Raises
    ------
    ValueError
        When requested methods use each other in a cycle.
    """
    pending = list(specs)
    names = {m.name for m in pending}
    placed: list = []
    while pending:
        done = {m.name for m in placed}
        ready = next((m for m in pending if all(u in done or u not in names for u in m.uses)), None)
        if ready is None:
            raise ValueError("requested methods use each other in a cycle: " + ", ".join(m.name for m in pending))
        placed.append(ready)
        pending.remove(ready)
    return placed


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` for a CLI method name.

    ``"diff@0.05"`` and the like are resolved through the registered family
    (``diff_mask`` with ``threshold=0.05``).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or a bad
        parameter.
    """
    if not isinstance(name, str):
        raise ValueError(f"method name must be a string, got {type(name).__name__}")
    key = name.strip()
    if key in _SPECS:
        return _SPECS[key]
    base, at, arg = key.partition("@")
    if at and base in _FAMILIES:
        family = _FAMILIES[base]
        try:
            fn = family.factory(arg)
        except ValueError as exc:
            raise ValueError(f"bad method {name!r}: {exc}") from None
        # The parsed parameters, not their spelling, say which map it is.
        parameters = tuple(sorted(fn.keywords.items())) if isinstance(fn, functools.partial) else (arg.strip(),)
        return MethodSpec(key, fn, family.kind, family.input, identity=(base, parameters))
    raise ValueError(
        f"unknown target method {name!r}; valid: {', '.join(available_methods())}"
    )


def _diff_at(arg: str) -> Callable[..., np.ndarray]:
    threshold = check_fraction(arg, "the diff threshold")
    return functools.partial(diff_mask, threshold=threshold)


def _noise_kwargs(item, options) -> dict:
    # --noise-sigma overrides the σ chosen from the item's compression.
    sigma = getattr(options, "noise_sigma", None)
    return {"sigma": sigma if sigma is not None else sigma_for_compression(item.compression)}


class LazyFunction:
    """``module.function``, imported on the first call.

    Model-backed methods live with their models (torch); registering them
    through this keeps ``import ffmask.targets`` free of torch. Picklable, so
    a spec travels to worker processes by value.
    """

    def __init__(self, module: str, function: str):
        self.module, self.function = module, function

    def __call__(self, *args, **kwargs):
        import importlib

        return getattr(importlib.import_module(self.module), self.function)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyFunction({self.module}.{self.function})"


class CheckpointCheck:
    """A model method's parent-side check: ``check_checkpoint(options.checkpoint_for(method))``."""

    def __init__(self, method: str, module: str):
        self.method, self.check = method, LazyFunction(module, "check_checkpoint")

    def __call__(self, options) -> None:
        self.check(options.checkpoint_for(self.method))


def _register_model_method(name: str, module: str, batch: str, extras: tuple) -> None:
    """A method backed by a trained model: ``module`` provides ``load_for_run(options)``,
    ``batch(model, images, labels)`` and ``check_checkpoint(path)``."""
    register_method(name, LazyFunction(module, batch), kind="continuous", input="image",
                    model=LazyFunction(module, "load_for_run"), extras=extras,
                    check=CheckpointCheck(name, module))


def _noise_at(arg: str) -> Callable[..., np.ndarray]:
    sigma = check_positive(arg, "the noise sigma")
    return functools.partial(noise_map, sigma=sigma)


register_method("ssim", ssim_map, kind="continuous")
register_method("diff", diff_map, kind="continuous")
register_method("mscc", mscc_mask, kind="mask")
register_method("noise", noise_map, kind="noise", input="image", item_kwargs=_noise_kwargs)
# FoCus weak maps (Tian et al.): a trained model, run in batches; see ffmask.models.focus_method.
_register_model_method("focus", "ffmask.models.focus_method", "focus_batch", extras=("focus_prob",))
# Forgery Attention Maps (Wang & Deng) of any trained evaluator; see ffmask.models.fam_method.
_register_model_method("fam", "ffmask.models.fam_method", "fam_batch", extras=("fam_prob",))
register_method("official", official_mask, kind="mask", input="mask_video", gray=True)
register_family("diff", _diff_at, kind="mask", arg="T")
register_family("noise", _noise_at, kind="noise", input="image", arg="SIGMA")
