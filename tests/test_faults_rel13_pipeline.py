"""Session 15 (rel13), K11: an annotate run hanging for good after a group whose last fake is unreadable.

Found by this session's full suite (``test_annotate.py::test_faults_are_recorded_and_everything_else_written``
hung: py-spy showed the main thread in ``Thread.start`` of the next group's read-ahead thread, and that new
thread, inside ``threading``'s own bookkeeping, running the garbage collector, which finalized the previous
group's read-ahead generator (``pipeline._ahead``), whose ``ThreadPoolExecutor.shutdown`` waited on a lock the
same thread held). The generator outlived its group in a reference cycle: the unreadable fake's exception,
raised again in ``_annotate_one`` (``outcome.get()``), carried that frame in its traceback, and the frame kept
the outcome holding the exception, and the generator. Only the cyclic collector could free it, at any moment
in any thread. Now the group closes its reads when it is done, and the read-ahead never joins its thread on
the way out (a generator the collector closes can no longer wait there).
"""

from __future__ import annotations

import gc
import threading

from ffmask.datasets import get_dataset
from ffmask.pipeline import JobSpec, annotate_groups, plan_groups
from ffmask.synth.tree import build_synth


def test_a_group_whose_last_fake_is_unreadable_leaves_no_read_ahead_thread(tmp_path):
    root = tmp_path / "ff++"
    build_synth(root, seed=7, identities=2, frames=6, compressions=("c23",), manipulations=("Deepfakes", "FaceSwap"))
    (root / "manipulated_sequences/FaceSwap/c23/videos/000_001.mp4").write_bytes(b"")  # the group's last fake
    scan = get_dataset("ff++", root, compression="c23")
    groups = plan_groups(scan.items, paired=True)
    group = next(g for g in groups if g.original is not None and g.original.video_id == "youtube/000")
    assert [i.video_id for i in group.items][-1] == "FaceSwap/000_001"
    gc.collect()
    gc.disable()  # only reference counting: what is left now would wait for the collector
    try:
        (result,) = annotate_groups([group], JobSpec(methods=("mscc",), frames=2, size=32), prefetch=True)
        status = {e["video_id"]: (e["status"], e["reason"]) for e in result.entries}
        assert status["FaceSwap/000_001"][0] == "skipped" and "unreadable video" in status["FaceSwap/000_001"][1]
        for thread in threading.enumerate():
            if thread.name.startswith("ffmask-decode"):
                thread.join(timeout=10)  # told to end (its executor shut down): it ends by itself
        left = [t.name for t in threading.enumerate() if t.name.startswith("ffmask-decode")]
        assert left == []  # 9368f92: the read-ahead thread (and its executor) kept alive until a collection
    finally:
        gc.enable()
