"""The Hugging Face Hub, when the user is online: ``--config org/name`` that is not in the local HF
cache is fetched with ``huggingface_hub`` (``pip install 'kvcalc[hf]'``), and ``--weights org/name``
sizes the weights from the safetensors headers, read by HTTP range request.

Only ``config.json``, ``model.safetensors.index.json`` and the first bytes of each safetensors file
(its header) are requested, never weights. The two JSON files go where huggingface_hub caches
(``HF_HUB_CACHE`` / ``HF_HOME``), so a rerun finds them offline. huggingface_hub itself honours
``HF_TOKEN`` (sent as ``Authorization: Bearer``), ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE=1``;
``--offline`` sets the last. Every Hub failure becomes one error naming the repo and what to do:
401 (token), 404 (no such repo or file), offline and not cached, Hub unreachable.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvcalc.errors import InvalidConfigError, KvcalcError, MissingDependencyError

if TYPE_CHECKING:
    from kvcalc.models import ModelConfig
    from kvcalc.planner.weights import SafetensorsWeights

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
"""A hub id as huggingface_hub validates it (``validate_repo_id``): ``org/name``, no ``..``."""
CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
FIRST_RANGE_BYTES = 100_000
"""huggingface_hub's own first range (``parse_safetensors_file_metadata``): most headers fit."""
MAX_SHARDS = 10_000


class HubError(KvcalcError):
    """A Hub request failed; the message says which repo, why, and what to do."""

    exit_code = 1

    def __init__(self, repo_id: str, message: str) -> None:
        super().__init__(f"--config/--weights {repo_id}: {message}")


def looks_like_repo_id(text: str) -> bool:
    return bool(REPO_ID_RE.match(text)) and ".." not in text and not text.endswith((".json", ".yaml", ".gguf"))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise MissingDependencyError("huggingface_hub", "hf") from None
    return huggingface_hub


def _explain(repo_id: str, exc: Exception, what: str) -> HubError:
    """One message per failure (huggingface_hub ``hf_raise_for_status`` classes and statuses)."""
    from huggingface_hub import errors

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.GatedRepoError):
        return HubError(repo_id, "gated repo (401/403): accept its terms on the Hub and set HF_TOKEN")
    if status == 401:
        token = "HF_TOKEN is set but was refused" if os.environ.get("HF_TOKEN") else "no HF_TOKEN is set"
        return HubError(repo_id, f"the Hub answered 401 Unauthorized ({token}); set HF_TOKEN to a token with "
                        "access to this repo")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(repo_id, f"no such repository on {endpoint} (404), or it is private: check the name, "
                        "or set HF_TOKEN")
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(repo_id, "no such revision on the Hub (404)")
    if isinstance(exc, errors.RemoteEntryNotFoundError) or status == 404:
        return HubError(repo_id, f"the repo has no {what} (404)")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        if offline():
            return HubError(repo_id, f"offline (--offline / HF_HUB_OFFLINE=1) and its {what} is not in the local "
                            "HF cache; run once online, or give a local path")
        return HubError(repo_id, f"cannot reach {endpoint} and its {what} is not in the local HF cache")
    if isinstance(exc, errors.HfHubHTTPError):
        return HubError(repo_id, f"the Hub answered {status} for {what}")
    return HubError(repo_id, f"cannot fetch {what}: {type(exc).__name__}: {str(exc)[:100]}")


def _download(repo_id: str, filename: str) -> Path:
    hub = _hub()
    try:
        return Path(hub.hf_hub_download(repo_id, filename, local_files_only=offline()))
    except Exception as exc:  # noqa: BLE001 - every huggingface_hub/httpx failure becomes one HubError
        raise _explain(repo_id, exc, filename) from None


def fetch_config(repo_id: str) -> Path:
    """``config.json`` of ``repo_id`` in the HF cache (downloaded when missing and online), and the
    safetensors index beside it when the repo has one (a 404 there is not an error)."""
    path = _download(repo_id, CONFIG)
    try:
        _download(repo_id, INDEX)
    except HubError:
        pass  # single-file or non-safetensors repos have no index
    return path


def load_from_hub(repo_id: str, assume_standard: bool = False) -> ModelConfig:
    """The model of ``repo_id``'s config.json, fetched into the HF cache if needed."""
    from kvcalc.loader import load_model_file

    return load_model_file(fetch_config(repo_id), assume_standard)


def _range(repo_id: str, filename: str, start: int, end: int) -> bytes:
    """Bytes ``start..end`` (inclusive) of a repo file, by HTTP range request with huggingface_hub's
    session, URL and headers (token included)."""
    hub = _hub()
    url = hub.hf_hub_url(repo_id, filename)
    try:
        headers = {**hub.utils.build_hf_headers(), "range": f"bytes={start}-{end}"}  # the token, as the client sends it
        response = hub.get_session().get(url, headers=headers, timeout=10, follow_redirects=True)
        hub.hf_raise_for_status(response)
    except Exception as exc:  # noqa: BLE001 - one HubError per failure
        raise _explain(repo_id, exc, filename) from None
    data: bytes = response.content
    if len(data) > end - start + 1:  # a server that ignores Range: keep only what was asked
        data = data[: end - start + 1] if response.status_code == 206 else data[start:end + 1]
    return data


def _header(repo_id: str, filename: str) -> dict[str, object]:
    from kvcalc.planner.weights import MAX_HEADER_BYTES, parse_safetensors_header

    source = f"{repo_id}/{filename}"
    first = _range(repo_id, filename, 0, FIRST_RANGE_BYTES - 1)
    if len(first) < 8:
        raise InvalidConfigError(source, "not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", first[:8])
    if length > MAX_HEADER_BYTES:
        raise InvalidConfigError(source, f"safetensors header of {length:,} bytes exceeds the cap")
    raw = first[8:8 + length] if length <= len(first) - 8 else _range(repo_id, filename, 8, 7 + length)
    if len(raw) != length:
        raise InvalidConfigError(source, f"safetensors header truncated ({len(raw):,} of {length:,} bytes)")
    return parse_safetensors_header(raw, source)


def hub_weights(repo_id: str) -> SafetensorsWeights:
    """Exact weights of ``repo_id``: online, the safetensors headers by range request; offline, the
    cached index's ``metadata.total_size``."""
    from kvcalc.loader import parse_json, read_text_capped
    from kvcalc.planner.weights import SafetensorsWeights, index_total_size, sum_header_entries

    try:
        index_path: Path | None = _download(repo_id, INDEX)
    except HubError as exc:
        if offline() or "(404)" not in str(exc):
            raise
        index_path = None
    shards = [SINGLE]
    if index_path is not None:
        index = parse_json(read_text_capped(index_path, "safetensors index"), f"{repo_id}/{INDEX}")
        if offline():
            total = index_total_size(index, f"{repo_id}/{INDEX}")
            return SafetensorsWeights(bytes=total, parameters=0, files=0,
                                      source=f"{repo_id} {INDEX} metadata.total_size (cached; offline)")
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InvalidConfigError(f"{repo_id}/{INDEX}", "weight_map must map tensor names to file names")
        shards = sorted(set(weight_map.values()))
        if not shards or len(shards) > MAX_SHARDS or any("/" in s and ".." in s for s in shards):
            raise InvalidConfigError(f"{repo_id}/{INDEX}", f"weight_map names {len(shards)} files")
    headers = [(f"{repo_id}/{s}", _header(repo_id, s)) for s in shards]
    total_bytes, params = sum_header_entries(headers)
    return SafetensorsWeights(bytes=total_bytes, parameters=params, files=len(shards),
                              source=f"{len(shards)} safetensors header(s) of {repo_id} (HTTP range requests)")


def load_model_or_hub(ref: str, assume_standard: bool = False) -> ModelConfig:
    """A built-in name, a path, a hub id in the local cache (``kvcalc.registry.load_model``), else
    a hub id fetched from the Hub."""
    from kvcalc.errors import UnknownModelError
    from kvcalc.registry import load_model

    try:
        return load_model(ref, assume_standard)
    except UnknownModelError:
        if not looks_like_repo_id(ref) or Path(ref).exists():
            raise
    return load_from_hub(ref, assume_standard)
