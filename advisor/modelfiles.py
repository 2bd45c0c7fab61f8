"""The base model's files, by sha256, for the approval: what `sftplan run` may train from. Pure: hashlib only.

A local model directory is recorded file by file (config, generation config, tokenizer files, chat
template, weights index and every weight shard); the executor re-hashes them on every rank before
loading and refuses a model that differs. A hub id cannot be checked here (no download at plan or run
time): it is recorded with its revision (``id@revision``, else unpinned) and said to be unverified.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from advisor.models import ModelFiles

# What from_pretrained reads for a causal LM and its tokenizer (weights: safetensors, else the .bin format).
NAMES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "added_tokens.json", "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "vocab.txt",
         "merges.txt", "model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_GLOBS = ("*.safetensors", "*.bin")


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (the one file hasher: model files, data copies, checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_file_names(model_dir: Path) -> list[str]:
    """The files of ``model_dir`` that loading the model and tokenizer reads, sorted."""
    found = {n for n in NAMES if (model_dir / n).is_file()}
    for pattern in WEIGHT_GLOBS:
        found |= {p.name for p in model_dir.glob(pattern) if p.is_file()}
    return sorted(found)


def hash_model_dir(model_dir: Path) -> dict[str, str]:
    """File name -> sha256 of every file ``model_file_names`` lists."""
    return {name: sha256_file(model_dir / name) for name in model_file_names(model_dir)}


def model_files(model: str, model_path: str | None) -> ModelFiles | None:
    """The record for the request: local files by sha256, or a hub id with its revision (unverified).
    None when the model names no weights (a preset id or bare size: planning only)."""
    target = model_path or model
    path = Path(target).expanduser()
    if path.is_dir():
        return ModelFiles(source="local", sha256=hash_model_dir(path))
    if model_path is None:
        return None
    repo, _, revision = model_path.partition("@")
    return ModelFiles(source="hub", revision=revision or None)


def check_model_dir(record: ModelFiles, model_dir: Path) -> str:
    """'' when ``model_dir`` holds exactly the recorded files with the recorded hashes, else the one-line reason."""
    now = model_file_names(model_dir)
    for name in sorted(record.sha256):
        path = model_dir / name
        if not path.is_file():
            return f"{path}: missing (the approved base model has it)"
        got = sha256_file(path)
        if got != record.sha256[name]:
            return f"{path}: changed since approval (sha256 {got[:12]}, approved {record.sha256[name][:12]})"
    extra = [n for n in now if n not in record.sha256]
    if extra:
        return f"{model_dir / extra[0]}: not in the approved base model (added after approval)"
    return ""
