"""A method receives another requested method's result for the same face (``MethodSpec.uses``).

``hull`` uses ``mscc`` (one of its candidates): with ``--method mscc,hull``
MSCC is computed once and passed to hull; alone, hull computes it itself.
Either way the maps are the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from ffmask import targets
from ffmask.pipeline import JobSpec, _Annotator, annotate_groups, plan_groups
from ffmask.targets import registry
from ffmask.targets.hull import hull_mask
from ffmask.targets.mscc import mscc_mask


@pytest.fixture
def probes():
    """Two pair methods: ``probe_user`` uses ``probe_base``; both log their calls."""
    calls = []

    def base(real, fake):
        calls.append(("base",))
        return (real[..., 0] > fake[..., 0]).astype(bool)

    def user(real, fake, probe_base=None):
        calls.append(("user", probe_base is not None))
        own = base(real, fake) if probe_base is None else probe_base
        return ~own

    targets.register_method("probe_base", base, kind="mask")
    targets.register_method("probe_user", user, kind="mask", uses=("probe_base",))
    yield calls
    registry._SPECS.pop("probe_base")
    registry._SPECS.pop("probe_user")
    registry.METHODS.pop("probe_base")
    registry.METHODS.pop("probe_user")


def _pair(seed=0, size=32):
    rng = np.random.default_rng(seed)
    real = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    fake = real.copy()
    fake[8:20, 10:24] = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    return real, fake


def test_the_used_method_runs_first_and_once(probes):
    real, fake = _pair()
    ann = _Annotator(JobSpec(methods=("probe_user", "probe_base"), size=32))
    maps = ann.maps(fake, item=None, real_crop=real, is_real=False)
    assert list(maps) == ["probe_user", "probe_base"]  # the requested order
    assert probes == [("base",), ("user", True)]  # base once, then user with its result
    np.testing.assert_array_equal(maps["probe_user"], ~maps["probe_base"])


def test_a_method_computes_an_unrequested_one_itself(probes):
    real, fake = _pair()
    maps = _Annotator(JobSpec(methods=("probe_user",), size=32)).maps(fake, item=None, real_crop=real,
                                                                       is_real=False)
    assert list(maps) == ["probe_user"]
    assert probes == [("user", False), ("base",)]
    np.testing.assert_array_equal(maps["probe_user"], ~(real[..., 0] > fake[..., 0]))


def test_real_faces_get_zeros_without_calls(probes):
    real, _ = _pair()
    maps = _Annotator(JobSpec(methods=("probe_base", "probe_user"), size=32)).maps(real, item=None,
                                                                                   real_crop=real, is_real=True)
    assert probes == [] and not maps["probe_user"].any() and not maps["probe_base"].any()


def test_dependency_order_is_stable_and_refuses_cycles():
    spec = registry.MethodSpec
    a, b = spec("a", None, "mask"), spec("b", None, "mask", uses=("a",))
    c, d = spec("c", None, "mask"), spec("d", None, "mask", uses=("b", "zzz"))  # zzz not requested: ignored
    names = lambda specs: [m.name for m in registry.dependency_order(specs)]  # noqa: E731
    assert names([b, c, a]) == ["c", "a", "b"]
    assert names([d, b, c, a]) == ["c", "a", "b", "d"]
    assert names([a, b, c, d]) == ["a", "b", "c", "d"]
    assert names([b]) == ["b"]
    x, y = spec("x", None, "mask", uses=("y",)), spec("y", None, "mask", uses=("x",))
    with pytest.raises(ValueError, match="cycle"):
        registry.dependency_order([x, y, a])
    hull, mscc = targets.get_method("hull"), targets.get_method("mscc")
    assert hull.uses == ("mscc",)
    assert names([hull, mscc]) == ["mscc", "hull"]


@pytest.mark.parametrize("uses, message", [("mscc", "tuple"), (("hull-rules",), "identifiers"),
                                           (("bad_uses",), "its own")])
def test_bad_uses_are_refused(uses, message):
    with pytest.raises(ValueError, match=message):
        targets.register_method("bad_uses", lambda *a: None, kind="mask", uses=uses)
    assert "bad_uses" not in registry._SPECS


def test_hull_with_the_callers_mscc_is_hull(tmp_path):
    from ffmask.synth.pairs import build_pairs, read_pairs

    build_pairs(tmp_path / "p", seed=8, n=1, regions=("mouth",), operations=("blur",), compressions=("c23",),
                size=96)
    p = next(read_pairs(tmp_path / "p"))
    m = mscc_mask(p.real, p.fake)
    own = hull_mask(p.real, p.fake, p.landmarks)
    assert own.any()
    np.testing.assert_array_equal(hull_mask(p.real, p.fake, p.landmarks, mscc=m), own)
    with pytest.raises(ValueError, match="mscc mask"):
        hull_mask(p.real, p.fake, mscc=m[:-1])


def test_records_with_mscc_and_hull_equal_separate_runs(small_ff_root, monkeypatch):
    """``--method mscc,hull`` writes what ``--method hull`` and ``--method mscc`` write separately,
    computing MSCC once per face."""
    import ffmask.targets.mscc as mscc_module
    from ffmask.datasets import get_dataset

    inside_hull = []  # hull's own MSCC calls (the registry's mscc entry holds the function itself)
    monkeypatch.setattr(mscc_module, "mscc_mask", lambda *a: inside_hull.append(1) or mscc_mask(*a))

    items = [i for i in get_dataset("ff++", small_ff_root).items if i.label == 1][:1]
    groups = plan_groups(items, paired=True)

    def run(methods):
        return [r for res in annotate_groups(groups, JobSpec(methods=methods, frames=3, size=96))
                for r in res.records]

    both = run(("mscc", "hull"))
    assert inside_hull == []
    hull_only = run(("hull",))
    assert len(inside_hull) == sum(r.label == 1 for r in hull_only) > 0
    mscc_only = run(("mscc",))
    assert len(both) == len(hull_only) == len(mscc_only) > 0
    assert any(r.label == 1 and r.maps["hull"].any() for r in both)
    for rb, rh, rm in zip(both, hull_only, mscc_only):
        assert list(rb.maps) == ["mscc", "hull"]
        assert (rb.video_id, rb.frame_index) == (rh.video_id, rh.frame_index) == (rm.video_id, rm.frame_index)
        np.testing.assert_array_equal(rb.maps["hull"], rh.maps["hull"])
        np.testing.assert_array_equal(rb.maps["mscc"], rm.maps["mscc"])
