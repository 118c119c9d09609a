"""Embeddings and the similarity index on real images: near-duplicates, same-class retrieval."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from visor.errors import ConfigError
from visor.retrieval import Embedder, VectorIndex, build_index, search
from visor.retrieval.embed import embedding_onnx, feature_tensor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder(classifier):
    return Embedder(classifier)


@pytest.fixture(scope="module")
def dev(imagenette, embedder):
    """All 450 imagenette-dev paths, class ids and embeddings."""
    paths = [p for p, _ in imagenette]
    return paths, np.array([c for _, c in imagenette]), embedder.embed(paths)


def modified_copy(path: Path, rng: np.random.Generator) -> bytes:
    """Random crop of 80-95% of each side, resize, brightness +-20%, JPEG quality 30."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    f = rng.uniform(0.80, 0.95)
    cw, ch = int(w * f), int(h * f)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x, y, x + cw, y + ch)).resize((int(cw * rng.uniform(0.7, 1.3)), int(ch * rng.uniform(0.7, 1.3))),
                                                  Image.BICUBIC)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=30)
    return buf.getvalue()


def test_embeddings_are_unit_vectors_from_pre_logit_features(embedder, classifier):
    v = embedder.embed(REPO / "assets" / "bus.jpg")
    assert v.shape == (1280,) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v)) - 1) < 1e-5
    # the rewritten graph still gives the classifier's logits, unchanged
    batch = embedder.preprocess([classifier.decode(REPO / "assets" / "bus.jpg")])
    feats, logits = embedder.features(batch)
    np.testing.assert_allclose(logits, classifier.logits(batch), atol=1e-5)
    np.testing.assert_allclose(feats[0], v, atol=1e-6)
    # the whole image, not the classifier's centre crop
    assert embedder.preprocess_config.resize == "squash" and classifier.card.preprocess.resize == "center_crop"


def test_a_model_folder_embeds_like_the_registry_model(embedder, classifier):
    """An exported model folder (card.json + model.onnx), as trained runs are, embeds identically."""
    folder = Path(classifier.session.path).parent
    assert (folder / "card.json").is_file()
    other = Embedder(str(folder))
    np.testing.assert_allclose(other.embed(REPO / "assets" / "bus.jpg"), embedder.embed(REPO / "assets" / "bus.jpg"),
                               atol=1e-6)


def test_graph_without_a_linear_head_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(ConfigError, match="classification layer"):
        feature_tensor(model)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ConfigError):
        embedding_onnx(tmp_path / "m.onnx", cache=tmp_path)


def test_near_duplicates_are_found_with_recall_at_1(dev, embedder, tmp_path):
    paths, _, originals = dev
    rng = np.random.default_rng(0)
    copies = []
    for i, p in enumerate(paths):
        out = tmp_path / f"copy_{i:03d}.jpg"
        out.write_bytes(modified_copy(p, rng))
        copies.append(str(out))
    index, failed = build_index(copies, tmp_path / "idx", embedder=embedder)
    assert failed == [] and len(index) == 450 and index.exact
    hits = index.search_vectors(originals, k=1)
    assert index.root == tmp_path.resolve()  # the folder holding the copies: paths are stored relative to it
    recall = np.mean([h[0].path == Path(c).name for h, c in zip(hits, copies, strict=True)])
    print(f"near-duplicate recall@1: {recall:.4f}")
    assert recall >= 0.99


def test_same_class_precision_at_5(dev, tmp_path, embedder):
    paths, classes, vectors = dev
    index = VectorIndex.create(tmp_path / "idx", model=embedder.name,
                               model_sha256=embedder.classifier.card.weights.sha256, dim=vectors.shape[1])
    index.add(vectors, [str(p) for p in paths], [str(c) for c in classes])
    hits = index.search_vectors(vectors, k=6)
    precision = np.mean([[int(h.label) == c for h in row if h.path != str(p)][:5]
                         for row, p, c in zip(hits, paths, classes, strict=True)])
    print(f"same-class precision@5: {precision:.4f}")
    assert precision >= 0.9


def test_incremental_add_remove_persist_and_approximate_search(dev, tmp_path, embedder):
    paths, _, vectors = dev
    folder = tmp_path / "idx"
    sha = embedder.classifier.card.weights.sha256
    with VectorIndex.create(folder, model=embedder.name, model_sha256=sha, dim=1280, exact_limit=100) as index:
        index.add(vectors[:60], [str(p) for p in paths[:60]])
        assert index.exact and not index.approximate and index.info.recall_at_10 is None
        index.add(vectors[60:200], [str(p) for p in paths[60:200]])
        index.add(vectors[:10], [str(p) for p in paths[:10]])  # same paths again: replaced, not duplicated
        assert len(index) == 200 and not index.exact and index.approximate
        recall = index.estimate_recall()
        assert 0.9 <= recall <= 1.0
        assert index.remove([str(paths[0]), "not/there.jpg"]) == 1
        index.set_expansion(300)
        index.save()
    with VectorIndex.open(folder) as index:  # reopened from disk
        assert len(index) == 199 and index.info.count == 199 and index.info.recall_at_10 == recall
        assert index.info.expansion_search == 300 and index.approximate
        approx = index.search_vectors(vectors[5:6], k=5, exact=False)[0]
        exact = index.search_vectors(vectors[5:6], k=5, exact=True)[0]
        assert approx[0].path == exact[0].path == str(paths[5])
        assert exact[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert [h.similarity for h in exact] == sorted((h.similarity for h in exact), reverse=True)
        assert str(paths[0]) not in {h.path for row in index.search_vectors(vectors[:1], k=10) for h in row}
        # removing from the HNSW graph down to the exact limit goes back to a flat (exact) index
        assert index.remove([str(p) for p in paths[100:199]]) == 99
        assert len(index) == 100 and index.exact and not index.approximate
        assert index.search_vectors(vectors[5:6], k=1)[0][0].path == str(paths[5])
    info = json.loads((folder / "index.json").read_text())
    assert info["count"] == 100 and info["model"] == "efficientnet_lite0" and info["version"] == 2


def test_search_by_image_and_model_mismatch(dev, tmp_path, embedder):
    paths = dev[0]
    index, _ = build_index([str(p) for p in paths[:20]], tmp_path / "idx", embedder=embedder)
    index.close()
    hits = search(tmp_path / "idx", paths[3], k=3, embedder=embedder)
    # relative to the folder the images were indexed from, never the server's absolute path
    assert paths[3].parent == paths[0].parent and hits[0].path == paths[3].name
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    with VectorIndex.open(tmp_path / "idx") as idx:
        idx.info.model_sha256 = "f" * 64
        with pytest.raises(ConfigError, match="would not be comparable"):
            search(idx, paths[3], embedder=embedder)


def test_cli_build_search_info_remove(tmp_path, shared_data, capsys, visor_cache):
    from visor.cli.main import main

    folder = shared_data("imagenette-dev") / "val" / "n01440764"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["index", "build", str(folder), str(bad), "--out", str(tmp_path / "idx"), "--labels", "parent"]) == 1
    assert "bad.jpg: UnsupportedFormat" in capsys.readouterr().err
    query = sorted(folder.glob("*.JPEG"))[0]
    assert main(["search", str(tmp_path / "idx"), str(query), "-k", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["path"] == query.name and out["hits"][0]["label"] == "n01440764"
    assert out["root"] == str(folder.resolve())
    assert main(["index", "remove", str(tmp_path / "idx"), str(query)]) == 0
    assert "14 images left" in capsys.readouterr().out
    assert main(["index", "info", str(tmp_path / "idx")]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 14
    assert main(["search", str(tmp_path / "nope"), str(query)]) == 2
