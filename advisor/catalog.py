"""The core's only file reads: data/hardware_catalog.yaml and data/model_presets.yaml."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from advisor.errors import UserError, did_you_mean
from advisor.specs import GpuSpec, SpecError
from advisor.yamlio import format_spec_error

_REPO_DATA = Path(__file__).resolve().parent.parent / "data"
_INSTALLED_DATA = Path(sys.prefix) / "share" / "sftplan"


def data_path(name: str) -> Path:
    """A data file next to the package (checkout / editable install), else where pip put it."""
    for folder in (_REPO_DATA, _INSTALLED_DATA):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{name}: not found in {_REPO_DATA} or {_INSTALLED_DATA}")


@dataclass(frozen=True)
class Catalog:
    gpus: dict[str, GpuSpec]
    sha256: str
    path: str
    notes: list[str] = field(default_factory=list)

    def gpu(self, gpu_id: str, field: str = "gpu") -> GpuSpec:
        """The tier ``gpu_id``; an unknown id is a UserError on ``field`` (the request field that named it)."""
        key = str(gpu_id).strip().lower()
        if key not in self.gpus:
            raise UserError(f"unknown GPU '{gpu_id}'{did_you_mean(key, list(self.gpus))}; valid: {', '.join(self.gpus)}",
                            field=field)
        return self.gpus[key]


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster CLI start


def _compose(path: Path) -> yaml.Node | None:
    """The YAML node tree (for file:line in messages); parsed only when an entry is invalid."""
    return yaml.compose(path.read_text(encoding="utf-8"), Loader=_FAST_LOADER)


def _read_yaml(path: Path) -> tuple[object, bytes]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
        return yaml.load(text, Loader=_FAST_LOADER), raw  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None


@lru_cache(maxsize=8)
def _load_catalog_cached(path_str: str) -> Catalog:
    path = Path(path_str)
    data, raw = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), list):
        raise UserError(f"{path}: expected a mapping with a 'gpus' list")
    gpus: dict[str, GpuSpec] = {}
    for i, entry in enumerate(data["gpus"]):
        try:
            spec = GpuSpec.from_dict(entry)
        except SpecError as exc:  # one line: file:line: gpus[i].field: reason
            raise UserError(format_spec_error(exc, str(path), _compose(path), ("gpus", i))) from None
        if spec.id in gpus:
            raise UserError(f"{path}: GPU id '{spec.id}' appears twice")
        gpus[spec.id] = spec
    return Catalog(gpus=gpus, sha256=hashlib.sha256(raw).hexdigest(), path=str(path))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate the hardware catalog (cached per path; the objects are shared, do not mutate)."""
    return _load_catalog_cached(str(Path(path) if path else data_path("hardware_catalog.yaml")))


@lru_cache(maxsize=1)
def load_model_presets() -> dict[str, dict]:
    path = data_path("model_presets.yaml")
    data, _ = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("presets"), dict):
        raise UserError(f"{path}: expected a mapping with a 'presets' mapping")
    return {str(k).lower(): dict(v) for k, v in data["presets"].items()}
