"""visor.io.outputs: output folders that never clobber inputs, one output path per input."""

from __future__ import annotations

import pytest
from PIL import Image

from visor.errors import InvalidInput, OutputConflict
from visor.io.outputs import OutputWriteError, check_output_folder, plan_outputs, save_image


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "a.png", "sub/a.jpg"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / name)
    return root


def test_output_folder_may_not_be_contain_or_be_inside_an_input(photos, tmp_path):
    files = sorted(photos.rglob("*.*"))
    for out, relation in ((photos, "is"), (photos / "sub", "is inside"), (photos / "new", "is inside"),
                          (tmp_path, "contains")):
        with pytest.raises(OutputConflict, match=f"out {out} {relation} the input {photos};") as e:
            check_output_folder(out, [photos, *files], what="out")
        assert e.value.http_status == 400 and isinstance(e.value, InvalidInput)
    # given as files only: the folder holding them is refused, a sibling folder is fine
    with pytest.raises(OutputConflict, match=f"contains the input {photos / 'a.jpg'}"):
        check_output_folder(photos, files)
    with pytest.raises(OutputConflict, match=f"contains the input {photos / 'sub' / 'a.jpg'}"):
        check_output_folder(photos / "sub", files[-1:])
    assert check_output_folder(tmp_path / "out", files) == (tmp_path / "out").resolve()
    (tmp_path / "link").symlink_to(photos)
    with pytest.raises(OutputConflict, match="is the input"):
        check_output_folder(tmp_path / "link", [photos])
    with pytest.raises(OutputConflict, match="is inside visor's data folder"):
        check_output_folder(tmp_path / "home" / "x", protected={tmp_path / "home": "visor's data folder"})
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputConflict, match="not a folder"):
        check_output_folder(tmp_path / "f")


def test_plan_keeps_relative_paths_and_extensions_and_never_collides(photos, tmp_path):
    files = [photos / "a.jpg", photos / "a.png", photos / "sub" / "a.jpg", photos / "a.jpg"]
    out = tmp_path / "out"
    targets = plan_outputs(files, out)
    assert [t.relative_to(out).as_posix() for t in targets] == ["a.jpg", "a.png", "sub/a.jpg", "a_2.jpg"]
    assert plan_outputs([], out) == []


def test_plan_refuses_existing_files_unless_overwrite(photos, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "a.jpg").write_bytes(b"mine")
    files = [photos / "a.jpg", photos / "sub" / "a.jpg"]
    with pytest.raises(OutputConflict, match=r"sub/a\.jpg already exists; choose an empty folder or pass --overwrite"):
        plan_outputs(files, out)
    assert plan_outputs(files, out, overwrite=True)[1] == out / "sub" / "a.jpg"
    assert (out / "sub" / "a.jpg").read_bytes() == b"mine"  # planning writes nothing


@pytest.mark.parametrize(("name", "fmt"), [("x.jpg", "JPEG"), ("x.JPEG", "JPEG"), ("x.png", "PNG"),
                                           ("x.webp", "WEBP"), ("x.bmp", "BMP"), ("x.gif", "GIF"),
                                           ("x.tif", "TIFF")])
def test_save_image_writes_the_format_of_the_extension(tmp_path, name, fmt):
    target = save_image(Image.new("RGB", (9, 7), (200, 10, 10)), tmp_path / "o" / name)
    with Image.open(target) as im:
        assert im.format == fmt and im.size == (9, 7)
    assert [p.name for p in target.parent.iterdir()] == [name]


def test_save_image_failure_is_typed_and_names_the_file(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    with pytest.raises(OutputWriteError, match=r"cannot write .*blocker/x\.png"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "blocker" / "x.png")
