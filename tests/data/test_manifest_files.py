"""Manifests are written atomically with a deliberate mode (0o644 less the umask), bytes as given."""

from __future__ import annotations

import os
import stat

from PIL import Image

from visor.data import ClassificationDataset


def test_manifest_mode_follows_the_umask(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / label / "x.png")
    ds = ClassificationDataset.from_folder(tmp_path / "imgs")
    old = os.umask(0o027)
    try:
        out = tmp_path / "m.csv"
        ds.to_manifest(out)
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o640  # the umask is honoured (it was a fixed 0o644)
    finally:
        os.umask(old)
    assert out.read_bytes() == b"path,label,split\nimgs/a/x.png,a,\nimgs/b/x.png,b,\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "m.csv"]
