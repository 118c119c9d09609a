"""Who is in each photo of ../shared/data/faces/unknown: every face left to right, with all 5 people of
faces/known indexed; None: nobody at Rekognition's default threshold 80 (the third person in
obama_and_biden.jpg is not among the known people). Shared by the FaceIndex and Rekognition API tests."""

EXPECTED_FACES: dict[str, list[str | None]] = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "kit_with_rose.jpg": ["rose_leslie", "kit_harington"],
    "obama-240p.jpg": ["obama"],
    "obama1.jpg": ["obama"],
    "obama_and_biden.jpg": ["biden", "obama", None],
    "obama_partial_face.jpg": ["obama"],
    "two_people.jpg": ["obama", "biden"],
}
