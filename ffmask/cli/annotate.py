"""``ffmask annotate <dataset> ROOT --method ... --out DIR``."""

from __future__ import annotations

import copy
import functools
import inspect
import typing
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Annotate a dataset: sampled frames -> face crops -> supervision maps -> HDF5 shards. "
    "Resumable: rerun the same command to continue an interrupted run.",
    no_args_is_help=True,
)

METHOD_HELP = (
    "Comma-separated maps to compute: mscc, ssim, diff, diff@T (e.g. diff@0.1), official "
    "(FF++ mask videos), hull, hull-rules, hull-net, noise, focus, fam (FAM of an evaluator checkpoint). Paired "
    "methods need originals."
)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts or None


def _run(dataset, root, out, method, dataset_options, *, frames, every, detector, scale, size, noise_sigma,
         checkpoint, device, jobs, backend, scheduler, videos_per_shard, overwrite, limit, image_codec,
         jpeg_quality, noise_storage, landmarks, person_check):
    """Annotate ``dataset`` at ``root`` with the shared options (``_SHARED``) and its own ``dataset_options``."""
    from ffmask.annotate import annotate
    from ffmask.cli._report import AnnotateProgress, print_annotate_summary
    from ffmask.errors import FFMaskError, OptionError
    from ffmask.pipeline import JobSpec

    if every is not None and frames is not None:
        # --every used to replace --frames silently: a run sampled otherwise than asked
        raise OptionError(f"give --frames N or --every K, not both (got --frames {frames} --every {every})")
    if every is None and frames is None:
        frames = DEFAULT_FRAMES
    if not Path(root).is_dir():
        raise FFMaskError(f"dataset root {root} is not a directory")
    root = Path(root).resolve()  # video paths must mean the same on every (cluster) worker
    spec = JobSpec(
        methods=tuple(_csv(method) or ()),
        frames=frames,
        every=every,
        detector=detector,
        scale=scale,
        size=size,
        noise_sigma=noise_sigma,
        checkpoints=checkpoint,
        device=device,
        landmarks=landmarks,
        person_check=person_check,
    )
    with AnnotateProgress() as progress:
        report = annotate(
            dataset, root, out, spec,
            dataset_options=dataset_options, videos_per_shard=videos_per_shard, jobs=jobs,
            backend=backend, scheduler=scheduler, overwrite=overwrite, limit=limit,
            shard_options=_shard_options(image_codec, jpeg_quality, noise_storage),
            on_plan=progress.plan, on_progress=progress.advance,
        )
    print_annotate_summary(report)


_OUT = typer.Option(..., "--out", "-o", help="Output directory for shards, manifest.jsonl and run.json.")
_METHOD = typer.Option("mscc", "--method", "-m", help=METHOD_HELP)
DEFAULT_FRAMES = 20
_FRAMES = typer.Option(None, help="Frames per video, evenly spaced (np.linspace over the frame count) "
                       f"[default: {DEFAULT_FRAMES}].", show_default=False)
_EVERY = typer.Option(None, help="Take every K-th frame instead of --frames (not with --frames).")
_DETECTOR = typer.Option("dlib", help="Face detector: dlib (HOG + 68 landmarks) or mtcnn.")
_LANDMARKS = typer.Option(False, "--landmarks/--no-landmarks",
                          help="Store every face's 68 landmarks even when no --method needs them "
                               "(e.g. for `ffmask export deepfakebench`).")
_PERSON_CHECK = typer.Option(None, "--person-check/--no-person-check", show_default=False,
                             help="Check that each video's face track stays one person (dlib's face recognition "
                                  "ResNet on five faces per track, ~0.4 s of CPU per video) and record where it "
                                  "changes (manifest: person_changes). "
                                  "Default: the videos that may be edited (folder, Celeb-DF's YouTube-real).")
_SCALE = typer.Option(1.3, help="Square crop side = scale x the detected face's longer side.")
_SIZE = typer.Option(224, help="Crop size in pixels (224, 256, 299, 512 are common).")
_SIGMA = typer.Option(None, help="Noise-map sigma; default 5 for raw/c23, 10 for c40.")
_CKPT = typer.Option(None, "--checkpoint", help="Checkpoint of the model-backed method: PATH when one is "
                     "requested, else METHOD=PATH,... (e.g. fam=runs/rfm,focus=ckpt/). focus defaults to the "
                     "bundled checkpoint; fam (FAM of any `ffmask train evaluator` checkpoint) needs one.")
_DEVICE = typer.Option(None, help="torch device for MTCNN and model-backed methods (focus, fam): auto, cpu, cuda, cuda:1 "
                       "(default auto: cuda if available). dlib always runs on the CPU.")
_JOBS = typer.Option(None, "--jobs", "-j", help="Parallel workers (default: every core). With --backend dask "
                     "and no --scheduler: the LocalCluster's worker processes.")
_BACKEND = typer.Option("loky", help="Where shard tasks run: loky (processes on this machine), fork (the same, "
                        "forked from this process: no start-up per worker; loky where forking is unsafe) or dask (a "
                        "LocalCluster of --jobs workers, or the cluster at --scheduler; needs ffmask[dask]).")
_SCHEDULER = typer.Option(None, help="Dask scheduler address (e.g. tcp://head:8786) to join a running cluster; "
                          "--out must be on storage every worker shares. Needs --backend dask.")
_VPS = typer.Option(20, help="Videos per shard (whole originals with their fakes stay together).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Delete an existing run in --out and start again.")
_LIMIT = typer.Option(None, help="Only the first N videos (N >= 1; for a quick look), whole groups first: an "
                      "original, then its fakes, then the next original.")
_IMAGE_CODEC = typer.Option("gradient", "--image-codec", help="How shards store face crops: gradient (lossless, "
                            "default: the smallest, as fast to read as delta), delta (lossless, the earlier default), png "
                            "(lossless, slower), blosc, raw, or jpeg (lossy: needs --jpeg-quality). See docs/shards.md.")
_JPEG_QUALITY = typer.Option(None, "--jpeg-quality", min=1, max=100, help="Quality of --image-codec jpeg (recorded).")
_NOISE_STORAGE = typer.Option("scaled", "--noise-storage", help="noise maps: scaled (int8, error <= 1 percent of each "
                              "face's range) or derived (only sigma stored, recomputed on read).")


def _shard_options(image_codec: str, jpeg_quality: Optional[int], noise_storage: str) -> dict:
    if image_codec == "jpeg" and jpeg_quality is None:
        raise typer.BadParameter("--image-codec jpeg is lossy: give --jpeg-quality explicitly")
    options = {"image_codec": image_codec, "noise_storage": noise_storage}
    if jpeg_quality is not None:
        options["jpeg_quality"] = jpeg_quality
    return options


# -- the dataset commands: their own options + the shared ones, declared once ----

# Shared options of every dataset command: name -> (type, option). Each command
# adds its dataset's own options; ``_dataset_command`` appends these.
_SHARED = {
    "out": (Path, _OUT),
    "method": (str, _METHOD),
    "frames": (Optional[int], _FRAMES),
    "every": (Optional[int], _EVERY),
    "detector": (str, _DETECTOR),
    "scale": (float, _SCALE),
    "size": (int, _SIZE),
    "noise_sigma": (Optional[float], _SIGMA),
    "checkpoint": (Optional[str], _CKPT),
    "device": (Optional[str], _DEVICE),
    "jobs": (int, _JOBS),
    "backend": (str, _BACKEND),
    "scheduler": (Optional[str], _SCHEDULER),
    "videos_per_shard": (int, _VPS),
    "overwrite": (bool, _OVERWRITE),
    "limit": (Optional[int], _LIMIT),
    "image_codec": (str, _IMAGE_CODEC),
    "jpeg_quality": (Optional[int], _JPEG_QUALITY),
    "noise_storage": (str, _NOISE_STORAGE),
    "landmarks": (bool, _LANDMARKS),
    "person_check": (Optional[bool], _PERSON_CHECK),
}


def _dataset_command(dataset: str, **defaults):
    """Register ``annotate <dataset>``: the decorated function declares ROOT and
    the dataset's own options and returns its scanner options; the shared
    options (``_SHARED``; ``defaults`` maps a name to another default value,
    or to a whole ``typer.Option``) are added here, so every dataset command
    takes them the same way."""

    def decorate(fn):
        own = inspect.signature(fn).parameters
        hints = typing.get_type_hints(fn)
        shared = []
        for name, (kind, option) in _SHARED.items():
            if isinstance(defaults.get(name), typer.models.OptionInfo):
                option = defaults[name]  # a whole option of its own (other help)
            elif name in defaults:
                option = copy.copy(option)
                option.default = defaults[name]
            shared.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))

        @functools.wraps(fn)
        def command(**kwargs):
            common = {name: kwargs.pop(name) for name in _SHARED}
            options = fn(**kwargs)
            _run(dataset, kwargs["root"], common.pop("out"), common.pop("method"), options, **common)

        params = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
                  for p in own.values()]
        command.__signature__ = inspect.Signature(params + shared)
        command.__annotations__ = {p.name: p.annotation for p in params + shared}
        return app.command(dataset)(command)

    return decorate


@_dataset_command("ff++")
def ffpp(
    root: Path = typer.Argument(..., help="FaceForensics++ root (holds original_sequences/, manipulated_sequences/)."),
    manipulations: Optional[str] = typer.Option(
        None, help="Comma-separated: Deepfakes,Face2Face,FaceSwap,NeuralTextures,FaceShifter (default: all present)."
    ),
    compression: str = typer.Option("c23", help="raw, c23 or c40."),
    split: str = typer.Option("all", help="train, val, test (official split files) or all."),
    originals: bool = typer.Option(True, "--originals/--no-originals", help="Also write the real faces."),
) -> dict:
    """FaceForensics++: each fake is compared with its original, cropped with the original's box."""
    return {"manipulations": _csv(manipulations), "compression": compression, "split": split,
            "include_originals": originals}


@_dataset_command("folder", method=typer.Option("noise", "--method", "-m",
                                                help="Single-image methods: noise, focus, fam."))
def folder(
    root: Path = typer.Argument(..., help="Any directory of videos and folders of images (searched recursively)."),
    labels: Optional[Path] = typer.Option(None, help="CSV or JSON mapping relative video path -> real/fake (0/1); "
                                          "default: ROOT/labels.csv when it exists."),
) -> dict:
    """Unpaired videos and folders of images (no originals): noise residuals, FoCus weak maps, FAMs."""
    return {"labels": str(labels) if labels else None}


@_dataset_command("celeb-df")
def celeb_df(
    root: Path = typer.Argument(..., help="Celeb-DF root (Celeb-real/, YouTube-real/, Celeb-synthesis/, "
                                "List_of_testing_videos.txt)."),
    split: str = typer.Option("all", help="test (the videos List_of_testing_videos.txt names), train "
                              "(every other video) or all."),
) -> dict:
    """Celeb-DF (v1/v2): fake idA_idB_N is compared with its original Celeb-real/idA_N."""
    return {"split": split}


@_dataset_command("dfdc")
def dfdc(
    root: Path = typer.Argument(..., help="DFDC root: dfdc_train_part_*/ (each with metadata.json) and/or the "
                                "test folder (labels.csv), or one of them."),
    split: str = typer.Option("all", help="all, a metadata.json split (train), or test (labels.csv)."),
) -> dict:
    """DFDC: fakes compared with the original metadata.json names; one tracked face per video."""
    return {"split": split}


@_dataset_command("dfdcp", method="noise")
def dfdcp(
    root: Path = typer.Argument(..., help="DFDC preview root (dataset.json, original_videos/, method_A/, "
                                "method_B/)."),
    split: str = typer.Option("all", help="train, test (dataset.json's \"set\") or all."),
) -> dict:
    """DFDC preview: labelled videos, unpaired (dataset.json names no originals)."""
    return {"split": split}


_NO_DETECTION = typer.Option("none", help="Face detector: none (default: the frames are face crops, each "
                             "resized whole to --size), dlib or mtcnn.")


@_dataset_command("wdf", method="noise", detector=_NO_DETECTION)
def wdf(
    root: Path = typer.Argument(..., help="WildDeepfake root ({real,fake}_{train,test}/N.tar.gz)."),
    split: str = typer.Option("all", help="train, test or all."),
) -> dict:
    """WildDeepfake: face sequences read straight from the tar archives, no detection.

    The frames are already face crops: by default (--detector none) each one is
    resized whole to --size. A video id is <split folder>/<archive>/<sequence>.
    """
    return {"split": split}
