"""Test helper: which frames ``ffmask.video`` actually decodes."""

from __future__ import annotations


def count_decoded_frames(monkeypatch) -> list[int]:
    """A list that fills with the index of every frame ``ffmask.video`` decodes from now on (its
    ``_all_decoded_frames`` wrapped through ``monkeypatch``); clear it between reads."""
    from ffmask import video

    decoded: list[int] = []
    real = video._all_decoded_frames

    def counting(*args):
        for item in real(*args):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(video, "_all_decoded_frames", counting)
    return decoded
