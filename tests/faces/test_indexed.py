"""FaceIndex: Rekognition-style face collections (faces as the unit, FaceIds, faiss search, quality filter)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from faces_unknown import EXPECTED_FACES as EXPECTED  # tests/faces_unknown.py
from storage_backends import DATABASES, postgres_database, run_together  # tests/storage_backends.py
from visor.errors import InvalidInput
from visor.faces import (
    DEFAULT_MATCH_THRESHOLD,
    FACE_MODEL_VERSION,
    CollectionExists,
    CollectionNotFound,
    FaceAnalyzer,
    FaceIndex,
    FaceNotFound,
    InvalidPaginationToken,
    NoFaceFound,
)
from visor.faces.indexed import QUALITY_FILTERS, distance_for, quality_reasons, similarity

REPO = Path(__file__).resolve().parents[2]

# Who the largest face of each photo is (what SearchFacesByImage searches).
LARGEST = {
    "alex_lacamoire1.jpg": "alex_lacamoire",
    "johnsnow_test1.jpg": "kit_harington",
    "kit_with_rose.jpg": "kit_harington",
    "obama-240p.jpg": "obama",
    "obama1.jpg": "obama",
    "obama_and_biden.jpg": "obama",
    "obama_partial_face.jpg": "obama",
    "two_people.jpg": "biden",
}


@pytest.fixture(scope="module")
def analyzer(zoo_cache) -> FaceAnalyzer:
    return FaceAnalyzer()  # YuNet (weights from ../shared/models through zoo_cache) + dlib's embeddings


@pytest.fixture(scope="module")
def faces_dir(shared_data) -> Path:
    return shared_data("faces")


@pytest.fixture(scope="module")
def known(tmp_path_factory, analyzer, faces_dir):
    """An SQLite file with every photo of faces/known indexed (ExternalImageId = the person) in "known";
    returns (path, {photo: IndexResult})."""
    db = tmp_path_factory.mktemp("indexed") / "sub" / "faces.db"
    results = {}
    with FaceIndex(db, analyzer=analyzer) as index:
        index.create_collection("known")
        for person in sorted((faces_dir / "known").iterdir()):
            for photo in sorted(person.iterdir()):
                key = f"{person.name}/{photo.name}"
                results[key] = index.index_faces("known", photo, external_image_id=person.name)
    return db, results


@pytest.fixture(scope="module")
def unknown_faces(known, analyzer, faces_dir):
    """{photo: [DetectedFace, ...] largest first} for faces/unknown."""
    with FaceIndex(known[0], analyzer=analyzer) as index:
        return {p.name: index.detect(p) for p in sorted((faces_dir / "unknown").iterdir())}


@pytest.fixture(params=DATABASES)
def db(request, tmp_path):
    """A new, empty database: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "faces.db"
    else:
        with postgres_database() as url:
            yield url


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """n synthetic embeddings spread like dlib's (norm about 1, neighbours about 0.9 apart at 10,000)."""
    v = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------- scores


def test_similarity_scale():
    assert similarity(0.0) == 100.0
    assert similarity(0.6) == pytest.approx(80.0)
    assert similarity(1.5) == pytest.approx(50.0)
    assert similarity(3.0) == 0.0 and similarity(4.5) == 0.0
    assert distance_for(DEFAULT_MATCH_THRESHOLD) == pytest.approx(0.6)
    assert distance_for(similarity(0.42)) == pytest.approx(0.42)


# ---------------------------------------------------------------------------------------------- real faces


def test_index_every_known_photo(known, faces_dir):
    """AUTO keeps every face of faces/known: 9 photos of 5 people, one face each, each with a FaceId."""
    db, results = known
    assert len(results) == 9
    assert all(len(r.indexed) == 1 and r.unindexed == [] for r in results.values())
    face_ids = [r.indexed[0][0].face_id for r in results.values()]
    image_ids = [r.indexed[0][0].image_id for r in results.values()]
    assert len(set(face_ids)) == 9 and len(set(image_ids)) == 9
    assert all(len(f) == 36 and f.count("-") == 4 for f in face_ids)
    for key, result in results.items():
        record, face = result.indexed[0]
        assert record.external_image_id == key.split("/")[0]
        w, h = Image.open(faces_dir / "known" / key).size
        assert (face.width, face.height) == (w, h)
        assert record.box == pytest.approx((face.xyxy[0] / w, face.xyxy[1] / h, face.xyxy[2] / w, face.xyxy[3] / h))
        assert 0 <= record.box[0] < record.box[2] <= 1 and 0 <= record.box[1] < record.box[3] <= 1
        assert 0.9 < record.confidence <= 1 and record.confidence == face.confidence
        assert len(face.landmarks) == 5 and face.embedding.shape == (128,)
        # the least of faces/known: brightness 42.3, sharpness 50 (AUTO = MEDIUM asks 15 and 20)
        assert 40 <= face.brightness <= 70 and 45 <= face.sharpness <= 100
    with FaceIndex(db) as index:
        info = index.describe_collection("known")
        assert (info.name, info.face_count, info.face_model_version) == ("known", 9, FACE_MODEL_VERSION)
        assert info.created_at.tzinfo is not None


def test_acceptance_search_image_finds_every_unknown_person(known, analyzer, faces_dir):
    db, _ = known
    with FaceIndex(db, analyzer=analyzer) as index:
        for photo, person in LARGEST.items():
            face, matches = index.search_image("known", faces_dir / "unknown" / photo)
            assert matches, photo
            assert {r.external_image_id for r, _ in matches} == {person}, photo
            assert [s for _, s in matches] == sorted((s for _, s in matches), reverse=True)
            assert all(s >= 80 for _, s in matches)
            assert face.quality_reasons == ()


def test_every_unknown_face_and_similarity_ranges(known, unknown_faces):
    """Own person's best similarity 85-99, anyone else's 78 at most; the stranger (Sasha) 76 at most
    (measured: own 85.3-98.0, other 77.1 at most, Sasha 73.6)."""
    db, _ = known
    got, own, other, stranger = {}, [], [], []
    with FaceIndex(db) as index:
        for photo, faces in unknown_faces.items():
            names = []
            for face in sorted(faces, key=lambda f: f.xyxy[0]):
                matches = index.search("known", face.embedding)
                names.append(matches[0][0].external_image_id if matches else None)
                best = {}
                for record, score in index.search("known", face.embedding, max_faces=9, threshold=0):
                    best.setdefault(record.external_image_id, score)
                assert len(best) == 5
                if matches:
                    own.append(best.pop(names[-1]))
                    other.append(max(best.values()))
                else:
                    stranger.append(max(best.values()))
            got[photo] = names
    assert got == EXPECTED
    assert len(own) == 11 and min(own) >= 84 and max(own) <= 99
    assert max(other) <= 78.5 and len(stranger) == 1 and stranger[0] <= 76


def test_largest_face_of_nobody_indexed_matches_nobody(known, tmp_path, analyzer, faces_dir, unknown_faces):
    """A collection without Obama: his photos' largest faces match nobody (Biden, beside him, is not searched)."""
    _, results = known
    with FaceIndex(tmp_path / "f.db", analyzer=analyzer) as index:
        index.create_collection("no_obama")
        kept = [(k, r.indexed[0]) for k, r in results.items() if not k.startswith("obama/")]
        records = index.add_embeddings("no_obama", np.stack([face.embedding for _, (_, face) in kept]),
                                       external_image_ids=[k.split("/")[0] for k, _ in kept])
        assert len(records) == 7
        for photo in ("obama1.jpg", "obama_and_biden.jpg"):
            face, matches = index.search_image("no_obama", faces_dir / "unknown" / photo)
            assert matches == [], photo
            assert face.xyxy == unknown_faces[photo][0].xyxy  # the largest face was searched
        _, matches = index.search_image("no_obama", faces_dir / "unknown" / "two_people.jpg")
        assert {r.external_image_id for r, _ in matches} == {"biden"}


def test_quality_levels_on_unknown(unknown_faces):
    """What each QualityFilter keeps of the 12 faces of faces/unknown: every one up to MEDIUM (= AUTO);
    HIGH (faces of 100 px or more, brightness 30 or more) refuses kit_with_rose's two, obama-240p's and Sasha's."""
    kept = {}
    refused = {}
    for q in QUALITY_FILTERS:
        kept[q] = 0
        for photo, faces in unknown_faces.items():
            for f in faces:
                x0, y0, x1, y1 = f.xyxy
                reasons = quality_reasons(min(x1 - x0, y1 - y0), f.confidence, f.sharpness, f.brightness, q)
                kept[q] += not reasons
                if reasons:
                    refused.setdefault(q, []).append((photo, reasons))
    assert kept == {"NONE": 12, "AUTO": 12, "LOW": 12, "MEDIUM": 12, "HIGH": 8}
    assert sorted(refused["HIGH"]) == [("kit_with_rose.jpg", ("SMALL_BOUNDING_BOX",))] * 2 + [
        ("obama-240p.jpg", ("SMALL_BOUNDING_BOX",)), ("obama_and_biden.jpg", ("LOW_BRIGHTNESS",))]


def test_index_faces_quality_filter_and_max_faces(tmp_path, analyzer, faces_dir):
    src = Image.open(faces_dir / "known" / "obama" / "obama.jpg").convert("RGB")
    dark = ImageEnhance.Brightness(src).enhance(0.1)  # face brightness about 6 (LOW asks 10)
    small = src.resize((src.width // 8, src.height // 8))  # a face of about 30 x 40 px (MEDIUM asks 40)
    with FaceIndex(tmp_path / "f.db", analyzer=analyzer) as index:
        index.create_collection("c")
        r = index.index_faces("c", dark, quality_filter="LOW")
        assert r.indexed == [] and [reasons for _, reasons in r.unindexed] == [("LOW_BRIGHTNESS",)]
        r = index.index_faces("c", small)  # AUTO
        assert r.indexed == [] and [reasons for _, reasons in r.unindexed] == [("SMALL_BOUNDING_BOX",)]
        assert index.face_count("c") == 0
        assert len(index.index_faces("c", small, quality_filter="LOW").indexed) == 1
        assert len(index.index_faces("c", dark, quality_filter="NONE").indexed) == 1
        pair = faces_dir / "unknown" / "two_people.jpg"
        r = index.index_faces("c", pair, external_image_id="pair:1", max_faces=1)
        (record, face), = r.indexed
        (other, reasons), = r.unindexed
        assert reasons == ("EXCEEDS_MAX_FACES",) and face.area > other.area  # the largest face is kept (Biden)
        assert record.external_image_id == "pair:1"
        both = index.index_faces("c", pair, quality_filter="HIGH")
        assert len(both.indexed) == 2 and both.unindexed == []
        assert both.indexed[0][0].image_id == both.indexed[1][0].image_id != record.image_id
        assert both.indexed[0][1].area > both.indexed[1][1].area
        assert index.face_count("c") == 5


def test_no_face_and_typed_errors(tmp_path, analyzer, faces_dir):
    bus = REPO / "assets" / "bus.jpg"
    with FaceIndex(tmp_path / "f.db", analyzer=analyzer) as index:
        index.create_collection("known")
        with pytest.raises(NoFaceFound, match=r"bus\.jpg: no face found") as e:
            index.search_image("known", bus)
        assert e.value.http_status == 400
        assert index.index_faces("known", bus).indexed == [] and index.face_count("known") == 0
        with pytest.raises(CollectionNotFound, match="Did you mean 'known'") as e:
            index.search_image("knwon", faces_dir / "unknown" / "obama1.jpg")
        assert e.value.http_status == 404
        with pytest.raises(CollectionNotFound):
            index.index_faces("nope", faces_dir / "unknown" / "obama1.jpg")
        with pytest.raises(CollectionExists) as e:
            index.create_collection("known")
        assert e.value.http_status == 409
        with pytest.raises(InvalidInput, match="external image id"):
            index.index_faces("known", bus, external_image_id="a b")
        with pytest.raises(InvalidInput, match="quality filter"):
            index.index_faces("known", bus, quality_filter="BEST")
        with pytest.raises(InvalidInput, match="max_faces"):
            index.index_faces("known", bus, max_faces=0)
        with pytest.raises(FaceNotFound) as e:
            index.search_face("known", "00000000-0000-0000-0000-000000000000")
        assert e.value.http_status == 404 and e.value.code == "face_not_found"
        assert index.face_count("known") == 0


# ---------------------------------------------------------------------------------------------- synthetic


def test_lifecycle_paging_delete_and_reopen(db):
    vectors = _vectors(25, seed=1)
    with FaceIndex(db) as index:  # no analyzer is loaded for vector work
        assert index.list_collections() == []
        info = index.create_collection("staff")
        assert (info.name, info.face_count) == ("staff", 0)
        index.create_collection("guests")
        for bad in ("bad name", "", "a/b", "x" * 256):
            with pytest.raises(InvalidInput):
                index.create_collection(bad)
        ids = [f"img-{i}" if i % 2 else None for i in range(25)]
        records = index.add_embeddings("staff", vectors, external_image_ids=ids,
                                       boxes=np.tile([0.1, 0.2, 0.5, 0.6], (25, 1)), confidences=np.full(25, 0.9))
        assert [r.external_image_id for r in records] == ids
        assert records[3].box == (0.1, 0.2, 0.5, 0.6) and records[3].confidence == 0.9
        pages, token = [], None
        while True:
            page, token = index.list_faces("staff", max_results=10, after=token)
            pages.append(page)
            if token is None:
                break
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [r.face_id for p in pages for r in p] == [r.face_id for r in records]  # oldest first
        picked = [records[7].face_id, records[2].face_id, "not-a-face"]
        assert [r.face_id for r in index.list_faces("staff", face_ids=picked)[0]] == [picked[1], picked[0]]
        with pytest.raises(InvalidPaginationToken):
            index.list_faces("staff", after="garbage!")
        assert index.search("staff", vectors[4])[0][0].face_id == records[4].face_id
        deleted, missing = index.delete_faces("staff", [records[4].face_id, records[4].face_id, "nope"])
        assert (deleted, missing) == ([records[4].face_id], ["nope"])
        assert index.face_count("staff") == 24
        assert all(r.face_id != records[4].face_id for r, _ in index.search("staff", vectors[4], threshold=0))
        assert index.delete_faces("staff", ["nope"]) == ([], ["nope"])
    with FaceIndex(db) as index:  # a restart: everything is there
        assert index.list_collections() == ["guests", "staff"]
        assert index.describe_collection("staff").face_count == 24
        again = index.list_faces("staff")[0]
        assert [r.face_id for r in again] == [r.face_id for r in records if r.face_id != records[4].face_id]
        assert again[0] == records[0]  # every field, created_at included
        hit, score = index.search("staff", vectors[9])[0]
        assert hit == records[9] and score == pytest.approx(100.0, abs=1e-3)
        index.delete_collection("staff")
        assert index.list_collections() == ["guests"]
        with pytest.raises(CollectionNotFound):
            index.search("staff", vectors[0])
        index.create_collection("staff")
        assert index.face_count("staff") == 0 and index.search("staff", vectors[0], threshold=0) == []


def test_search_face_leaves_itself_out_and_keeps_limits(tmp_path):
    base, step1, step2 = _vectors(3, seed=2)
    near = np.stack([base, base + 0.02 * step1, base + 0.3 * step2, -base])  # 0.02, 0.3 and 2 away
    with FaceIndex(tmp_path / "f.db") as index:
        index.create_collection("c")
        records = index.add_embeddings("c", near)
        found = index.search_face("c", records[0].face_id)
        assert [r.face_id for r, _ in found] == [records[1].face_id, records[2].face_id]
        assert found[0][1] == pytest.approx(similarity(float(np.linalg.norm(near[1] - near[0]))), abs=1e-3)
        assert [r.face_id for r, _ in index.search_face("c", records[0].face_id, max_faces=1)] == [records[1].face_id]
        assert len(index.search_face("c", records[0].face_id, threshold=0)) == 3
        with pytest.raises(InvalidInput):
            index.search("c", base, max_faces=0)
        with pytest.raises(InvalidInput):
            index.search("c", base, threshold=101)
        with pytest.raises(InvalidInput):
            index.search("c", np.zeros(3))
        with pytest.raises(InvalidInput):
            index.add_embeddings("c", np.zeros((2, 5)))
        with pytest.raises(InvalidInput):
            index.add_embeddings("c", near[:2], boxes=np.array([[0.5, 0, 0.4, 1]] * 2))
        with pytest.raises(InvalidInput):
            index.add_embeddings("c", near[:2], external_image_ids=["ok", "not ok"])
        assert index.face_count("c") == 4  # nothing written by the refused calls


def test_another_instance_sees_changes(db):
    """Two FaceIndex objects on one database (two processes, two replicas): each search sees the other's writes."""
    vectors = _vectors(3, seed=4)
    with FaceIndex(db) as a, FaceIndex(db) as b:
        a.create_collection("c")
        first = a.add_embeddings("c", vectors[:1])[0]
        assert a.search("c", vectors[0])[0][0] == first  # a's vectors are built now
        added = b.add_embeddings("c", vectors[1:2])[0]
        assert a.search("c", vectors[1])[0][0] == added
        b.delete_faces("c", [first.face_id])
        assert a.search("c", vectors[0], threshold=0)[0][0] == added
        third = a.add_embeddings("c", vectors[2:3])[0]  # a's own change, applied in place
        assert [r for r, _ in a.search("c", vectors[2], threshold=0)] == [third, added]
        assert [r for r, _ in b.search("c", vectors[2], threshold=0)] == [third, added]
        b.delete_collection("c")
        b.create_collection("c")
        assert a.search("c", vectors[1], threshold=0) == []


def test_replicas_open_and_write_together(db):
    """Six indexes opening one new database at once (the tables made once), then writing to one collection
    at once: every face is there, and each one's next search sees all of them."""
    opened: list[FaceIndex] = []
    assert run_together(lambda: opened.append(FaceIndex(db))) == []
    try:
        opened[0].create_collection("c")
        vectors = _vectors(6 * 5, seed=7)
        turn = iter(range(6))
        for index in opened:
            index.search("c", vectors[0], threshold=0)  # each builds its vectors before the writes

        def write() -> None:
            k = next(turn)
            index = opened[k]
            for j in range(5):
                index.add_embeddings("c", vectors[k * 5 + j])

        assert run_together(write) == []
        for index in opened:
            assert index.face_count("c") == 30
            assert len(index.search("c", vectors[0], max_faces=100, threshold=0)) == 30
    finally:
        for index in opened:
            index.close()


def test_file_is_private(tmp_path):
    path = tmp_path / "new" / "faces.db"
    with FaceIndex(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sequential_search_matches_faiss_search(tmp_path, monkeypatch):
    """Collections up to SEQUENTIAL_LIMIT are searched on one thread over faiss's storage: the same faces and
    scores as faiss's own search, after deletions too (which move the stored vectors)."""
    from visor.faces import indexed

    vectors = _vectors(3000, seed=8)
    queries = _vectors(20, seed=9)
    with FaceIndex(tmp_path / "f.db") as index:
        index.create_collection("c")
        records = index.add_embeddings("c", vectors)
        index.search("c", queries[0])
        index.delete_faces("c", [r.face_id for r in records[::7]])

        def results() -> list[list[tuple[str, float]]]:
            return [[(r.face_id, round(s, 3)) for r, s in index.search("c", q, max_faces=50, threshold=0)]
                    for q in queries]

        sequential = results()
        monkeypatch.setattr(indexed, "SEQUENTIAL_LIMIT", 0)
        threaded = results()
    assert sequential == threaded and all(len(r) == 50 for r in sequential)
    deleted = {r.face_id for r in records[::7]}
    assert not any(face_id in deleted for r in sequential for face_id, _ in r)


def test_ten_thousand_faces_find_themselves(tmp_path):
    """10,000 faces in one transaction; a stored vector plus noise finds itself first (timing:
    benchmarks/face_search.py)."""
    vectors = _vectors(10_000, seed=5)
    rng = np.random.default_rng(6)
    with FaceIndex(tmp_path / "f.db") as index:
        index.create_collection("big")
        records = index.add_embeddings("big", vectors)
        assert index.face_count("big") == 10_000
        picks = rng.choice(10_000, 200, replace=False)
        for i in picks:
            noise = rng.normal(scale=0.02, size=128).astype(np.float32)  # about 0.23 away: similarity about 92
            found = index.search("big", vectors[i] + noise, max_faces=5, threshold=0)
            assert found[0][0].face_id == records[i].face_id
            assert found[0][1] == pytest.approx(similarity(float(np.linalg.norm(noise))), abs=1e-3)
            assert len(found) == 5
