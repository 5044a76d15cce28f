"""Session 10 (rel8), item 4: a ShardIndex shared by threads with few open files.

With ``max_open=1`` every read of another shard closes the file the previous
read used; a thread still reading from that file met a closed HDF5 file (an
error, or garbage from a recycled id). Many threads read random faces of four
shards through one index and every array is compared with what a
single-thread index read. Fails at 589437d.
"""

from __future__ import annotations

import threading

import numpy as np

from ffmask.shards import ShardIndex
from tests.test_shards import make_record, write_shard

MAPS = ["mscc", "ssim", "noise"]


def test_threads_reading_through_one_index_with_max_open_1_get_the_same_faces(tmp_path):
    for s in range(4):
        write_shard(tmp_path / f"shard-{s:05d}.h5", [make_record(10 * s + i) for i in range(5)],
                    schema_version=2)
    single = ShardIndex(tmp_path, MAPS)
    want = [single.read(i, geometry=True) for i in range(len(single))]
    shared = ShardIndex(tmp_path, MAPS, max_open=1)
    errors, mismatches, reads = [], [], [0]
    start = threading.Barrier(8)

    def work(seed):
        rng = np.random.default_rng(seed)
        start.wait()
        try:
            for i in rng.integers(0, len(want), 60):
                face = shared.read(int(i), geometry=True)
                reads[0] += 1
                for key in ("image", "box", "landmarks"):
                    if not np.array_equal(face[key], want[i][key], equal_nan=True):
                        mismatches.append((int(i), key))
                for name in MAPS:
                    if not np.array_equal(face["maps"][name], want[i]["maps"][name]):
                        mismatches.append((int(i), name))
                if face["video_id"] != want[i]["video_id"]:
                    mismatches.append((int(i), "video_id"))
        except Exception as exc:  # noqa: BLE001 - the test reports what any thread met
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert not mismatches, mismatches[:5]
    assert reads[0] == 8 * 60
    assert len(shared._handles) <= 1  # the bound still holds once the readers are done
    shared.close()
