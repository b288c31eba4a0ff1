"""The seed community's fixed facts (7th Community, Xingcheng Street, Fangshan District)."""

BUILDINGS = frozenset(str(n) for n in range(1, 23))  # its 22 residential buildings
