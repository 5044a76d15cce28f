"""The target-method registry: CLI names, parametrised names, specs."""

from __future__ import annotations

import numpy as np
import pytest

from _target_refs import face_crop, make_fake, ref_diff_map, ref_mscc_mask, ref_noise_map, ref_ssim_map
from ffmask import targets
from ffmask.targets import registry
from ffmask.targets.hull import hull_net_mask


@pytest.fixture(scope="module")
def pair():
    real = face_crop(64)
    return real, make_fake(real)


def test_builtin_methods_and_specs():
    assert targets.METHODS == {
        "ssim": targets.ssim_map,
        "diff": targets.diff_map,
        "mscc": targets.mscc_mask,
        "noise": targets.noise_map,
        "official": targets.official_mask,
        "hull": targets.hull_mask,
        "hull-rules": targets.hull_rules_mask,
        "hull-net": hull_net_mask,
    }
    expected = {
        "ssim": ("continuous", "pair", True, np.float16),
        "diff": ("continuous", "pair", True, np.float16),
        "mscc": ("mask", "pair", True, np.uint8),
        "noise": ("noise", "image", False, np.float16),
        "official": ("mask", "mask_video", False, np.uint8),
        "hull": ("mask", "pair", True, np.uint8),
        "hull-rules": ("mask", "pair", True, np.uint8),
        "hull-net": ("mask", "pair", True, np.uint8),
    }
    for name, (kind, input_, paired, dtype) in expected.items():
        spec = targets.get_method(name)
        assert isinstance(spec, targets.MethodSpec)
        assert (spec.name, spec.fn) == (name, targets.METHODS[name])
        got = (spec.kind, spec.input, spec.paired, spec.store_dtype)
        assert got == (kind, input_, paired, dtype)
    assert targets.available_methods() == [
        "diff", "diff@T", "fam", "focus", "hull", "hull-net", "hull-rules", "mscc", "noise", "noise@SIGMA", "official",
        "ssim"
    ]
    # only hull (the selector, the rules and the refinement) take the face's landmarks
    assert {n for n in expected if targets.get_method(n).landmarks} == {"hull", "hull-rules", "hull-net"}
    assert not targets.get_method("diff@0.1").landmarks


def test_only_pair_methods_take_landmarks():
    with pytest.raises(ValueError, match="only pair methods take landmarks"):
        targets.register_method("lm_image", lambda image: image, kind="continuous", input="image", landmarks=True)
    assert "lm_image" not in targets.METHODS


def test_specs_compute_the_reference_maps(pair):
    # Each registry entry against an independent implementation of its method
    # (tests/_target_refs.py: skimage SSIM, the MSCCNet authors' script, pywt).
    real, fake = pair
    np.testing.assert_allclose(targets.get_method("ssim")(real, fake), ref_ssim_map(real, fake), rtol=0, atol=1e-5)
    np.testing.assert_allclose(targets.get_method("diff")(real, fake), ref_diff_map(real, fake), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(targets.get_method("mscc")(real, fake), ref_mscc_mask(real, fake))
    got, ref = targets.get_method("noise")(fake), ref_noise_map(fake, sigma=5.0)
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
    # the maps differ from each other, so a spec bound to the wrong function fails
    assert targets.get_method("mscc")(real, fake).any() and not targets.get_method("mscc")(real, real).any()


@pytest.mark.parametrize(
    "text,threshold",
    [("diff@0.1", 0.1), ("diff@0.05", 0.05), ("diff@0", 0.0), (" diff@.25 ", 0.25)],
)
def test_diff_at_threshold(pair, text, threshold):
    real, fake = pair
    spec = targets.get_method(text)
    got = (spec.name, spec.kind, spec.input, spec.paired)
    assert got == (text.strip(), "mask", "pair", True)
    assert spec.store_dtype == np.uint8
    got = spec(real, fake)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, ref_diff_map(real, fake) > threshold)


def test_noise_at_sigma(pair):
    spec = targets.get_method("noise@10")
    assert (spec.kind, spec.input, spec.paired) == ("noise", "image", False)
    got, ref = spec(pair[1]), ref_noise_map(pair[1], sigma=10.0)
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
    # sigma 10 is not sigma 5: the parameter reaches the function
    assert np.abs(got - ref_noise_map(pair[1], sigma=5.0)).max() > 1e-2


@pytest.mark.parametrize("name", ["ssmi", "", "@0.1", "mscc@2", "hulls", "DIFF"])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ValueError, match="unknown target method.*valid: diff, diff@T, fam, focus, hull, hull-net, hull-rules, mscc"):
        targets.get_method(name)


@pytest.mark.parametrize(
    "name",
    ["diff@", "diff@abc", "diff@1.5", "diff@-0.1", "diff@nan", "noise@0", "noise@-3", "noise@x"],
)
def test_bad_parameters(name):
    with pytest.raises(ValueError, match=f"bad method '{name}'"):
        targets.get_method(name)


def test_get_method_rejects_non_strings():
    with pytest.raises(ValueError, match="string"):
        targets.get_method(3)


def test_register_method_as_decorator_and_function(pair):
    real, fake = pair
    try:
        @targets.register_method("absmax", kind="mask")
        def absmax(real, fake):
            return targets.diff_map(real, fake) >= 0.5

        assert targets.METHODS["absmax"] is absmax
        spec = targets.get_method("absmax")
        assert spec.paired and spec.kind == "mask"
        np.testing.assert_array_equal(spec(real, fake), absmax(real, fake))
        assert "absmax" in targets.available_methods()

        with pytest.raises(ValueError, match="already registered"):
            targets.register_method("absmax", absmax, kind="mask")
        targets.register_method("absmax", targets.diff_mask, kind="mask", replace=True)
        assert targets.get_method("absmax").fn is targets.diff_mask

        targets.register_method(
            "blurry", lambda image: image[..., 0] > 0, kind="mask", input="image"
        )
        assert not targets.get_method("blurry").paired
    finally:
        for name in ("absmax", "blurry"):
            registry._SPECS.pop(name, None)
            registry.METHODS.pop(name, None)
    assert "absmax" not in targets.METHODS


def test_register_family(pair):
    try:
        def at(arg):
            threshold = float(arg)  # raises ValueError for a bad parameter
            return lambda r, f: targets.ssim_map(r, f) > threshold

        targets.register_family("ssimgt", at, kind="mask", arg="T")
        spec = targets.get_method("ssimgt@0.3")
        np.testing.assert_array_equal(spec(*pair), targets.ssim_map(*pair) > 0.3)
        assert "ssimgt@T" in targets.available_methods()
        with pytest.raises(ValueError, match="bad method 'ssimgt@x'"):
            targets.get_method("ssimgt@x")
        with pytest.raises(ValueError, match="already registered"):
            targets.register_family("ssimgt", lambda arg: None, kind="mask")
    finally:
        registry._FAMILIES.pop("ssimgt", None)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="a@b", kind="mask"), "method name"),
        (dict(name="a,b", kind="mask"), "method name"),
        (dict(name="a/b", kind="mask"), "method name"),
        (dict(name="", kind="mask"), "method name"),
        (dict(name="x", kind="heatmap"), "kind must be one of mask, continuous, noise"),
        (
            dict(name="x", kind="mask", input="video"),
            "input must be one of pair, image, mask_video",
        ),
    ],
)
def test_register_method_rejects_bad_specs(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        targets.register_method(name, targets.diff_map, **kwargs)
    assert name not in targets.METHODS


def test_register_method_rejects_non_callables():
    with pytest.raises(ValueError, match="callable"):
        targets.register_method("notfn", 42, kind="mask")
    assert "notfn" not in targets.METHODS
