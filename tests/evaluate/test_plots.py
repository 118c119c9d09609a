import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor.evaluate.plots as plots_module
from visor.errors import InvalidInput
from visor.evaluate import plot_confusion_matrix, plot_reliability_diagram, plot_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert w > 0 and h > 0
    return w, h


def no_temp_files_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_confusion_matrix_png(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])
    out = plot_confusion_matrix(cm, ["cat", "dog", "bird"], tmp_path / "cm.png")
    assert out == tmp_path / "cm.png"
    assert_png(out)
    raw = plot_confusion_matrix(cm, ["cat", "dog", "bird"], str(tmp_path / "sub" / "raw.png"), normalize=False)
    assert_png(raw)
    assert no_temp_files_left(tmp_path)
    with pytest.raises(InvalidInput, match="labels"):
        plot_confusion_matrix(cm, ["cat", "dog"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_confusion_matrix_png_grows_with_many_classes(tmp_path):
    small = assert_png(plot_confusion_matrix(np.eye(3, dtype=int), list("abc"), tmp_path / "s.png"))
    big_labels = [f"class_{i}" for i in range(12)]
    big = assert_png(plot_confusion_matrix(np.eye(12, dtype=int) * 3, big_labels, tmp_path / "b.png"))
    assert big[0] > small[0] and big[1] > small[1]


def test_training_curves_png(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_loss": 2.1, "val_accuracy": 0.3, "lr": 1e-3},
        {"epoch": 2, "train_loss": 1.2, "val_loss": 1.5, "val_accuracy": 0.6, "val_f1": 0.55, "lr": 5e-4},
        {"epoch": 3, "train_loss": 0.8, "val_accuracy": 0.7, "lr": 1e-4},  # val_loss missing
    ]
    two_panels = assert_png(plot_training_curves(history, tmp_path / "curves.png"))
    one_panel = assert_png(plot_training_curves([{"train_loss": 1.0}, {"train_loss": 0.5}], tmp_path / "loss.png"))
    assert two_panels[0] > one_panel[0]  # the metric panel sits beside the loss panel
    assert_png(plot_training_curves([], tmp_path / "empty.png"))
    assert no_temp_files_left(tmp_path)
    with pytest.raises(InvalidInput, match="sequence of dicts"):
        plot_training_curves({"train_loss": 1.0}, tmp_path / "bad.png")


def test_reliability_diagram_png(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, 500)
    out = plot_reliability_diagram(probs, y, tmp_path / "rel.png", n_bins=10, title="val")
    assert_png(out)
    assert no_temp_files_left(tmp_path)
    with pytest.raises(InvalidInput):
        plot_reliability_diagram(probs, y[:10], tmp_path / "bad.png")


def test_overwrites_existing_file_atomically(tmp_path):
    target = tmp_path / "cm.png"
    target.write_bytes(b"old")
    plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], target)
    assert_png(target)
    assert no_temp_files_left(tmp_path)


def test_plots_do_not_use_pyplot(tmp_path):
    source = Path(plots_module.__file__).read_text()
    assert "matplotlib.pyplot" not in source and "import pyplot" not in source
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from visor.evaluate import plot_confusion_matrix, plot_reliability_diagram, plot_training_curves
        assert "matplotlib" not in sys.modules, "matplotlib imported at import time"
        out = {str(tmp_path)!r}
        plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], out + "/a.png")
        plot_training_curves([{{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5}}], out + "/b.png")
        plot_reliability_diagram(np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 0]), out + "/c.png")
        assert "matplotlib.figure" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("a.png", "b.png", "c.png"):
        assert_png(tmp_path / name)
