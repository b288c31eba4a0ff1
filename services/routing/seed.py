"""The seed community's registry, generated deterministically (7th Community, Xingcheng Street).

1 party committee, 10 branches of 3 committee members each, 896 party members living in the
22 buildings, 4 grids, the street office's sections and the city departments the seed names, and the
street and district command centres the escalation ladder climbs to.
Run `python -m services.routing.seed > services/routing/data/registry.json` to regenerate.
"""

from __future__ import annotations

import json
import math
import random
import sys

MEMBERS = 896
BRANCHES = 10
BUILDINGS = [str(n) for n in range(1, 23)]
GRIDS = {"g1": BUILDINGS[0:6], "g2": BUILDINGS[6:12], "g3": BUILDINGS[12:17], "g4": BUILDINGS[17:22]}
SKILLS = ["repairs", "plumbing", "electrics", "painting", "cleaning", "mediation", "elderly_care",
          "first_aid", "law", "publicity", "it", "gardening"]
WINDOWS = [["mon-fri 18:00-21:00", "sat-sun 09:00-18:00"], ["mon-sun 08:00-20:00"], ["sat-sun 08:00-20:00"],
           ["mon-fri 08:00-12:00"], ["mon-sun 00:00-24:00"]]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文斌鹏辉海燕玲丹"

SECTIONS = [
    ("s-urban", "Urban Management Section", "城市管理科"),
    ("s-civil", "Civil Affairs Section", "民政科"),
    ("s-community", "Community Building Section", "社区建设科"),
    ("s-safety", "Safety Production Section", "安全生产科"),
    ("s-governance", "Comprehensive Governance Office", "综治办"),
    ("s-party", "Party Building Section", "党建工作科"),
]
DEPARTMENTS = [
    ("d-housing", "District Housing Commission", "区住建委"),
    ("d-property", "Property management company", "物业公司"),
    ("d-enforcement", "Urban management law enforcement team", "城管执法队"),
    ("d-water", "Water supply company", "自来水公司"),
    ("d-power", "Power supply company", "供电公司"),
    ("d-gas", "Gas company", "燃气公司"),
    ("d-police", "Xingcheng police station", "星城派出所"),
    ("d-market", "Market supervision office", "市场监管所"),
]
# the ladder's upper rungs (escalation's ids): told when a summons climbs to them, each reporting to the next
COMMAND_CENTRES = [
    ("street-command-centre", "Xingcheng Street command centre", "星城街道指挥中心", "district-command-centre"),
    ("district-command-centre", "Fangshan District command centre", "房山区级指挥中心", None),
]


# The estate on the ground: about 380 m east-west by 340 m north-south (0.13 km²) in Xingcheng, Yanshan
# (Fangshan District), its streets turned ROTATION degrees anticlockwise from north. Each building is
# (x, y) of its centre in metres east and north of the estate's south-west corner, and its width and
# depth: six-storey slabs of 60 × 13 m in rows far enough apart for winter sun, and six high-rise
# towers (13–18: the seed names six high-rises).
ORIGIN = (39.71795, 115.97325)  # lat, long (WGS 84) of the south-west corner before the turn
ROTATION = 10.0
EXTENT = (380.0, 340.0)
LAYOUT = {
    "1": (55, 305, 60, 13), "2": (140, 305, 60, 13), "3": (55, 260, 60, 13), "4": (140, 260, 60, 13),
    "5": (55, 215, 60, 13), "6": (140, 215, 60, 13),
    "7": (240, 305, 60, 13), "8": (325, 305, 60, 13), "9": (240, 260, 60, 13), "10": (325, 260, 60, 13),
    "11": (240, 215, 60, 13), "12": (325, 215, 60, 13),
    "13": (45, 140, 28, 24), "14": (115, 140, 28, 24), "15": (45, 60, 28, 24), "16": (115, 60, 28, 24),
    "17": (175, 95, 28, 24),
    "18": (240, 140, 28, 24), "19": (325, 140, 60, 13), "20": (250, 85, 60, 13), "21": (330, 85, 60, 13),
    "22": (290, 30, 80, 13),
}
_METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180  # the mean earth radius places.haversine_m measures with


def _lat_long(x: float, y: float) -> tuple[float, float]:
    """A point of the estate in metres, turned about its centre, as WGS 84 degrees (flat: within 2 cm here)."""
    cx, cy = EXTENT[0] / 2, EXTENT[1] / 2
    turn = math.radians(ROTATION)
    dx, dy = x - cx, y - cy
    east = cx + dx * math.cos(turn) - dy * math.sin(turn)
    north = cy + dx * math.sin(turn) + dy * math.cos(turn)
    lat = ORIGIN[0] + north / _METRES_PER_DEGREE
    return round(lat, 7), round(ORIGIN[1] + east / (_METRES_PER_DEGREE * math.cos(math.radians(ORIGIN[0]))), 7)


def buildings() -> dict:
    """Each building's centre and footprint (a closed GeoJSON ring of [long, lat], anticlockwise)."""
    out = {}
    for bid, (x, y, width, depth) in LAYOUT.items():
        lat, long = _lat_long(x, y)
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]
        ring = [list(reversed(_lat_long(x + sx * width / 2, y + sy * depth / 2))) for sx, sy in corners]
        out[bid] = {"centre": {"lat": lat, "long": long}, "footprint": ring}
    return out


def grid_of(building: str) -> str:
    return next(g for g, buildings in GRIDS.items() if building in buildings)


def _unit(uid: str, kind: str, en: str, zh: str) -> list[dict]:
    head = "Chief" if kind == "section" else "Head"
    head_zh = "科长" if kind == "section" else "负责人"
    return [
        {"id": uid, "kind": kind, "name_en": en, "name_zh": zh, "superior_id": f"{uid}-head", "max_concurrent": 200},
        {"id": f"{uid}-head", "kind": kind, "name_en": f"{head}, {en}", "name_zh": f"{zh}{head_zh}",
         "superior_id": None, "max_concurrent": 200},
    ]


def generate(seed: int = 7) -> dict:
    """The registry as a JSON-ready dict; the same seed gives the same registry."""
    rng = random.Random(seed)
    responders: list[dict] = [
        {"id": "c-secretary", "kind": "member", "name_en": "Secretary of the community party committee",
         "name_zh": "社区党委书记", "superior_id": None, "branch": None, "building": "7", "skills": ["mediation"],
         "availability": ["mon-sun 00:00-24:00"], "max_concurrent": 20},
        {"id": "c-deputy", "kind": "member", "name_en": "Deputy secretary of the community party committee",
         "name_zh": "社区党委副书记", "superior_id": "c-secretary", "branch": None, "building": "7",
         "skills": ["mediation", "publicity"], "availability": ["mon-sun 00:00-24:00"], "max_concurrent": 20},
    ]
    in_branches = MEMBERS - len(responders)  # the committee's secretary and deputy are members too
    per_branch = in_branches // BRANCHES
    for b in range(1, BRANCHES + 1):
        branch_buildings = BUILDINGS[(b - 1) * 22 // BRANCHES: b * 22 // BRANCHES] or BUILDINGS[-1:]
        secretary = f"m-b{b:02d}-secretary"
        for i in range(per_branch + (in_branches - per_branch * BRANCHES if b == BRANCHES else 0)):
            role = {0: "secretary", 1: "committee", 2: "committee"}.get(i, "member")
            mid = secretary if role == "secretary" else f"m-b{b:02d}-{i:03d}"
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
            building = rng.choice(branch_buildings) if rng.random() < 0.8 else rng.choice(BUILDINGS)
            responders.append({
                "id": mid, "kind": "member",
                "name_en": f"{name} (branch {b}{', secretary' if role == 'secretary' else ''})",
                "name_zh": f"{name}（第{b}党支部{'书记' if role == 'secretary' else '委员' if role == 'committee' else '党员'}）",
                "superior_id": "c-secretary" if role == "secretary" else secretary,
                "branch": str(b), "building": building,
                "skills": sorted(rng.sample(SKILLS, rng.choice((1, 1, 2, 2, 3)))),
                "availability": rng.choice(WINDOWS),
                "max_concurrent": 5 if role != "member" else rng.choice((2, 3, 3, 4)),
            })
    for uid, en, zh in SECTIONS:
        responders += _unit(uid, "section", f"{en}, Xingcheng Street", f"星城街道{zh}")
    for uid, en, zh in DEPARTMENTS:
        responders += _unit(uid, "department", en, zh)
    for uid, en, zh, superior in COMMAND_CENTRES:
        responders.append({"id": uid, "kind": "command_centre", "name_en": en, "name_zh": zh, "superior_id": superior})
    return {"grids": GRIDS, "buildings": buildings(), "responders": responders}


if __name__ == "__main__":
    json.dump(generate(), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
