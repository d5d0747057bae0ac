"""What a simulation runs on: episode specs (persona + target) and the item catalogue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from interplay.catalogue import Catalogue, Item
from interplay.data.errors import DataError
from interplay.episode import EpisodeSpec

DEMO = "demo"


@dataclass
class SimulationData:
    """Episode specs and the catalogue the agents may draw items from."""

    name: str
    episodes: list[EpisodeSpec]
    catalogue: Catalogue
    left_out: int = 0


def _from_json(obj: dict, name: str, origin: str) -> SimulationData:
    for key in ("catalogue", "episodes"):
        if key not in obj:
            raise DataError(f"{origin}: missing top-level field {key!r}")
    items, episodes = [], []
    for section, model, out in (("catalogue", Item, items), ("episodes", EpisodeSpec, episodes)):
        for i, raw in enumerate(obj[section]):
            try:
                out.append(model.model_validate(raw))
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"])
                raise DataError(f"{origin}: {section}[{i}].{field}: {err['msg']}") from None
    return SimulationData(name=name, episodes=episodes, catalogue=Catalogue(items))


def load_demo() -> SimulationData:
    """The embedded demo set: a dozen personas and targets, a 40-item catalogue."""
    text = resources.files("interplay.demo").joinpath("demo.json").read_text(encoding="utf-8")
    return _from_json(json.loads(text), DEMO, "interplay/demo/demo.json")


def load_records_folder(folder: Path, split: str) -> SimulationData:
    """Episodes from the records of a folder built by ``interplay data build`` (one split).

    Records without a target, or whose target is not in the catalogue or has no attributes, cannot
    drive a user simulator and are left out (their number is in ``SimulationData.left_out``)."""
    from interplay.data.build import read_catalogue, read_records

    records = read_records(folder, split)
    usable = [r for r in records if r.target is not None and r.target.attributes
              and r.meta.get("target_in_catalogue", True)]
    data = SimulationData(name=f"{folder.name}/{split}", episodes=[r.episode_spec() for r in usable],
                          catalogue=read_catalogue(folder))
    data.left_out = len(records) - len(usable)
    return data


def load_simulation_data(source: str, split: str = "test") -> SimulationData:
    """``demo``, a folder built by ``interplay data build`` (records of ``split``), or a JSON file
    with ``catalogue`` and ``episodes`` in the demo schema."""
    if source == DEMO:
        return load_demo()
    path = Path(source)
    if path.is_dir():
        return load_records_folder(path, split)
    if not path.is_file():
        raise DataError(f"{source}: no such data folder or file (use a folder built by 'interplay data build', "
                        "'demo', or a JSON file)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    return _from_json(obj, path.stem, str(path))
