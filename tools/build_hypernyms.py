"""Build ``src/visor/models/labels/imagenet_hypernyms.json``: generic labels over ImageNet-1k and COCO classes.

A one-off script, kept so that the table can be rebuilt and checked. It reads WordNet 3.0's noun database
(``data.noun``; ImageNet's wnids are WordNet 3.0 noun offsets) and, for each of a curated set of generic
labels (:data:`GENERIC`: "Dog", "Mammal", "Animal", "Vehicle", "Food"... never "entity" or "artifact"), lists
the ImageNet-1k classes (from ``visor/models/labels/imagenet1k.json``) and the COCO-80 classes (each mapped to
one WordNet synset in :data:`COCO_SYNSETS`) whose hypernym chain passes through it.

Get WordNet 3.0 offline from Debian's ``wordnet-base`` package::

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb /tmp/wordnet
    python tools/build_hypernyms.py --wordnet /tmp/wordnet/usr/share/wordnet

(``--wordnet`` defaults to ``/usr/share/wordnet``, where ``apt-get install wordnet-base`` puts it.)
``--check`` rebuilds in memory and exits 1 if the shipped table differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "src" / "visor" / "models" / "labels"
OUT = LABELS / "imagenet_hypernyms.json"

#: (display name, WordNet 3.0 noun wnid, a lemma of that synset: a check that the offset is the sense meant).
#: Cloud Vision style: sentence case. Chosen to be what people search photos by; ordered broad to narrow
#: inside each group (the table lists them most specific first).
GENERIC: tuple[tuple[str, str, str], ...] = (
    # living things
    ("Animal", "n00015388", "animal"),
    ("Invertebrate", "n01905661", "invertebrate"),
    ("Insect", "n02159955", "insect"),
    ("Butterfly", "n02274259", "butterfly"),
    ("Arachnid", "n01769347", "arachnid"),
    ("Crustacean", "n01974773", "crustacean"),
    ("Fish", "n02512053", "fish"),
    ("Shark", "n01482330", "shark"),
    ("Amphibian", "n01627424", "amphibian"),
    ("Reptile", "n01661091", "reptile"),
    ("Snake", "n01726692", "snake"),
    ("Lizard", "n01674464", "lizard"),
    ("Turtle", "n01662784", "turtle"),
    ("Bird", "n01503061", "bird"),
    ("Bird of prey", "n01604330", "bird_of_prey"),
    ("Mammal", "n01861778", "mammal"),
    ("Dog", "n02084071", "dog"),
    ("Cat", "n02121620", "cat"),
    ("Big cat", "n02127808", "big_cat"),
    ("Bear", "n02131653", "bear"),
    ("Primate", "n02469914", "primate"),
    ("Monkey", "n02484322", "monkey"),
    ("Rodent", "n02329401", "rodent"),
    ("Horse", "n02374451", "horse"),
    ("Whale", "n02062744", "whale"),
    ("Person", "n00007846", "person"),
    ("Plant", "n00017222", "plant"),
    ("Flower", "n11669921", "flower"),
    ("Fungus", "n12992868", "fungus"),
    # food
    ("Food", "n07555863", "food"),
    ("Fruit", "n07705931", "edible_fruit"),
    ("Vegetable", "n07707451", "vegetable"),
    ("Dish", "n07557434", "dish"),
    ("Baked goods", "n07622061", "baked_goods"),
    ("Dessert", "n07609840", "dessert"),
    ("Drink", "n07881800", "beverage"),
    # vehicles
    ("Vehicle", "n04524313", "vehicle"),
    ("Motor vehicle", "n03791235", "motor_vehicle"),
    ("Car", "n02958343", "car"),
    ("Truck", "n04490091", "truck"),
    ("Bus", "n02924116", "bus"),
    ("Motorcycle", "n03790512", "motorcycle"),
    ("Bicycle", "n02834778", "bicycle"),
    ("Train", "n04468005", "train"),
    ("Watercraft", "n04530566", "watercraft"),
    ("Boat", "n02858304", "boat"),
    ("Ship", "n04194289", "ship"),
    ("Aircraft", "n02686568", "aircraft"),
    ("Airplane", "n02691156", "airplane"),
    # things
    ("Building", "n02913152", "building"),
    ("Bridge", "n02898711", "bridge"),
    ("Furniture", "n03405725", "furniture"),
    ("Chair", "n03001627", "chair"),
    ("Table", "n04379243", "table"),
    ("Clothing", "n03051540", "clothing"),
    ("Footwear", "n03380867", "footwear"),
    ("Headwear", "n03502509", "headdress"),
    ("Jewellery", "n03597469", "jewelry"),
    ("Musical instrument", "n03800933", "musical_instrument"),
    ("Tool", "n04451818", "tool"),
    ("Weapon", "n04565375", "weapon"),
    ("Gun", "n03467984", "gun"),
    ("Bottle", "n02876657", "bottle"),
    ("Kitchen utensil", "n03621049", "kitchen_utensil"),
    ("Home appliance", "n03528263", "home_appliance"),
    ("Computer", "n03082979", "computer"),
    ("Telephone", "n04401088", "telephone"),
    ("Timepiece", "n04437953", "timepiece"),
    ("Sports equipment", "n04285146", "sports_equipment"),
    ("Ball", "n02778669", "ball"),
    ("Toy", "n03964744", "plaything"),
    ("Landform", "n09287968", "geological_formation"),
)

#: Hypernym links WordNet 3.0 lacks for the everyday sense (child wnid -> extra parents): a bus and a train are
#: "public transport" there, not vehicles; a dish and a dessert are not "food, solid food"; shoes are a "covering".
EXTRA_PARENTS: dict[str, tuple[str, ...]] = {
    "n02924116": ("n03791235",),  # bus -> motor vehicle
    "n04468005": ("n04524313",),  # train -> vehicle
    "n07557434": ("n07555863",),  # dish -> food
    "n07609840": ("n07555863",),  # dessert -> food
    "n03380867": ("n03051540",),  # footwear (shoes, boots) -> clothing
}

#: ImageNet classes left out of a label although WordNet puts them under it (WordNet's sense is not the everyday one).
EXCLUDE: dict[str, frozenset[str]] = {
    "Computer": frozenset({"n04238763", "n06359193"}),  # slide rule (an analog computer), website (a host)
    "Timepiece": frozenset({"n03891332"}),  # parking meter (a timer)
    "Ball": frozenset({"n04023962"}),  # punching bag
}

#: COCO-80 class name -> (the WordNet 3.0 synset it names, a lemma of it), so that a detected "dog" also counts as
#: Mammal and Animal.
COCO_SYNSETS: dict[str, tuple[str, str]] = {
    "person": ("n00007846", "person"), "bicycle": ("n02834778", "bicycle"), "car": ("n02958343", "car"),
    "motorcycle": ("n03790512", "motorcycle"), "airplane": ("n02691156", "airplane"), "bus": ("n02924116", "bus"),
    "train": ("n04468005", "train"), "truck": ("n04490091", "truck"), "boat": ("n02858304", "boat"),
    "traffic light": ("n06874185", "traffic_light"), "fire hydrant": ("n03346898", "fire_hydrant"),
    "stop sign": ("n06794110", "street_sign"), "parking meter": ("n03891332", "parking_meter"),
    "bench": ("n02828884", "bench"), "bird": ("n01503061", "bird"), "cat": ("n02121808", "domestic_cat"),
    "dog": ("n02084071", "dog"), "horse": ("n02374451", "horse"), "sheep": ("n02411705", "sheep"),
    "cow": ("n01887787", "cow"), "elephant": ("n02503517", "elephant"), "bear": ("n02131653", "bear"),
    "zebra": ("n02391049", "zebra"), "giraffe": ("n02439033", "giraffe"), "backpack": ("n02769748", "backpack"),
    "umbrella": ("n04507155", "umbrella"), "handbag": ("n02774152", "handbag"), "tie": ("n03815615", "tie"),
    "suitcase": ("n02773838", "suitcase"), "frisbee": ("n03397947", "frisbee"), "skis": ("n04228054", "ski"),
    "snowboard": ("n04251791", "snowboard"), "sports ball": ("n02779435", "ball"), "kite": ("n03621473", "kite"),
    "baseball bat": ("n02799175", "baseball_bat"), "baseball glove": ("n02800213", "baseball_glove"),
    "skateboard": ("n04225987", "skateboard"), "surfboard": ("n04363559", "surfboard"),
    "tennis racket": ("n04409806", "tennis_racket"), "bottle": ("n02876657", "bottle"),
    "wine glass": ("n04592099", "wineglass"), "cup": ("n03147509", "cup"), "fork": ("n03383948", "fork"),
    "knife": ("n03623556", "knife"), "spoon": ("n04284002", "spoon"), "bowl": ("n02881193", "bowl"),
    "banana": ("n07753592", "banana"), "apple": ("n07739125", "apple"), "sandwich": ("n07695965", "sandwich"),
    "orange": ("n07747607", "orange"), "broccoli": ("n07714990", "broccoli"), "carrot": ("n07730207", "carrot"),
    "hot dog": ("n07697537", "hot_dog"), "pizza": ("n07873807", "pizza"), "donut": ("n07639069", "donut"),
    "cake": ("n07628870", "cake"), "chair": ("n03001627", "chair"), "couch": ("n04256520", "couch"),
    "potted plant": ("n13083023", "houseplant"), "bed": ("n02818832", "bed"),
    "dining table": ("n03201208", "dining_table"), "toilet": ("n04446276", "toilet"), "tv": ("n04405907", "tv"),
    "laptop": ("n03642806", "laptop"), "mouse": ("n03793489", "mouse"), "remote": ("n04074963", "remote"),
    "keyboard": ("n03614007", "keyboard"), "cell phone": ("n02992529", "cellular_telephone"),
    "microwave": ("n03761084", "microwave"), "oven": ("n03862676", "oven"), "toaster": ("n04442312", "toaster"),
    "sink": ("n04223580", "sink"), "refrigerator": ("n04070727", "refrigerator"), "book": ("n02870526", "book"),
    "clock": ("n03046257", "clock"), "vase": ("n04522168", "vase"), "scissors": ("n04148054", "scissors"),
    "teddy bear": ("n04399382", "teddy_bear"), "hair drier": ("n03483316", "hair_drier"),
    "toothbrush": ("n04453156", "toothbrush"),
}

NOTICE = (
    "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. THIS SOFTWARE AND DATABASE IS "
    "PROVIDED \"AS IS\" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. BY WAY "
    "OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT- "
    "ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE OR "
    "DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS."
)


class Synsets:
    """WordNet noun synsets: lemmas and hypernyms (``@`` and instance ``@i``) by wnid."""

    def __init__(self, data_noun: Path) -> None:
        self.lemmas: dict[str, list[str]] = {}
        self.parents: dict[str, list[str]] = {}
        for line in data_noun.read_text(encoding="utf-8").splitlines():
            if not line or line.startswith("  "):  # the licence header
                continue
            fields = line.split("|", 1)[0].split()
            wnid = "n" + fields[0]
            count = int(fields[3], 16)
            self.lemmas[wnid] = [fields[4 + 2 * i].lower() for i in range(count)]
            at = 4 + 2 * count
            pointers = int(fields[at])
            parents = []
            for i in range(pointers):
                symbol, target, pos = fields[at + 1 + 4 * i: at + 4 + 4 * i]
                if symbol in ("@", "@i") and pos == "n":
                    parents.append("n" + target)
            self.parents[wnid] = parents
        for child, extra in EXTRA_PARENTS.items():
            self.parents[child] = [*self.parents[child], *extra]

    def ancestors(self, wnid: str) -> set[str]:
        """``wnid`` and every synset above it (all hypernym paths)."""
        seen, todo = set(), [wnid]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(self.parents.get(node, ()))
        return seen

    def check(self, wnid: str, lemma: str, what: str) -> None:
        if wnid not in self.lemmas:
            raise SystemExit(f"{what}: {wnid} is not a WordNet 3.0 noun synset")
        if lemma.lower() not in self.lemmas[wnid]:
            raise SystemExit(f"{what}: {wnid} is {self.lemmas[wnid]}, not {lemma!r}")


def members(synsets: Synsets, wnids: Iterable[str], generic: str, exclude: frozenset[str] = frozenset()) -> list[int]:
    return [i for i, w in enumerate(wnids) if w not in exclude and generic in synsets.ancestors(w)]


def build(wordnet: Path) -> dict:
    data_noun = wordnet / "data.noun"
    if not data_noun.is_file():
        raise SystemExit(f"no {data_noun}: pass --wordnet FOLDER holding WordNet 3.0's data.noun (see --help)")
    synsets = Synsets(data_noun)
    imagenet = json.loads((LABELS / "imagenet1k.json").read_text())
    coco = json.loads((LABELS / "coco80.json").read_text())["names"]
    wnids = imagenet["synsets"]
    if len(wnids) != 1000 or set(COCO_SYNSETS) != set(coco):
        raise SystemExit("imagenet1k.json needs 1000 synsets and COCO_SYNSETS every coco80 name")
    for name, wnid, lemma in GENERIC:
        synsets.check(wnid, lemma, name)
    if set(EXCLUDE) - {name for name, _, _ in GENERIC}:
        raise SystemExit(f"EXCLUDE names unknown labels: {sorted(set(EXCLUDE) - {n for n, _, _ in GENERIC})}")
    for name, (wnid, lemma) in COCO_SYNSETS.items():
        synsets.check(wnid, lemma, f"COCO {name!r}")
    missing = [w for w in wnids if w not in synsets.lemmas]
    if missing:
        raise SystemExit(f"ImageNet wnids not in WordNet 3.0: {missing}")
    coco_wnids = [COCO_SYNSETS[n][0] for n in coco]
    labels = []
    for name, wnid, _ in GENERIC:
        row = {"name": name, "wnid": wnid, "imagenet": members(synsets, wnids, wnid, EXCLUDE.get(name, frozenset())),
               "coco": members(synsets, coco_wnids, wnid)}
        if not row["imagenet"] and not row["coco"]:
            raise SystemExit(f"{name} ({wnid}) has no ImageNet or COCO class under it: drop it")
        labels.append(row)
    # most specific first: fewer ImageNet classes under a label, then the name
    labels.sort(key=lambda r: (len(r["imagenet"]) + len(r["coco"]), r["name"]))
    return {
        "source": "WordNet 3.0 noun hypernyms (data.noun from Debian's wordnet-base 1:3.0-37, sha256 "
                  f"{hashlib.sha256(data_noun.read_bytes()).hexdigest()}); ImageNet-1k wnids from imagenet1k.json; "
                  "built by tools/build_hypernyms.py",
        "license": "WordNet 3.0 licence (Princeton University; permissive, notice below must be kept)",
        "notice": NOTICE,
        "how": "each label lists the ImageNet-1k class indices and COCO-80 class indices whose WordNet hypernym "
               "chain (all paths, @ and @i pointers) passes through its synset; coco_synsets: the synset each "
               "COCO-80 class names, in class order",
        "labels": labels,
        "coco_synsets": coco_wnids,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"),
                        help="folder with WordNet 3.0's data.noun (default: /usr/share/wordnet)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the table (default: {OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the table at --out differs")
    args = parser.parse_args(argv)
    text = json.dumps(build(args.wordnet), indent=1) + "\n"
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print("up to date" if same else f"{args.out} differs from a rebuild")
        return 0 if same else 1
    sys.path.insert(0, str(REPO / "src"))
    from visor.io.files import atomic_write

    atomic_write(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
