"""The Hub, against a local HTTP server that serves a hub layout (started and stopped here):
the real huggingface_hub client over real HTTP (``HF_ENDPOINT``), no mocks. Fetch, cache, offline
rerun, token header sent, safetensors headers by range request, 401 and 404 errors."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("huggingface_hub")

REPO = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_test_token_123"


def safetensors(tensors: dict[str, tuple[str, list[int], int]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


# Two shards: 2 x 1,048,576 + 512 bf16 values + an fp8 weight with its fp32 scales.
SHARD1 = safetensors({"model.embed_tokens.weight": ("BF16", [1024, 1024], 2 << 20)})
SHARD2 = safetensors({"lm_head.weight": ("BF16", [1024, 1024], 2 << 20), "model.norm.weight": ("BF16", [512], 1024),
                      "w.weight": ("F8_E4M3", [256, 256], 65536), "w.weight_scale_inv": ("F32", [2, 2], 16)})
WEIGHT_BYTES = (2 << 20) * 2 + 1024 + 65536 + 16
INDEX = json.dumps({"metadata": {"total_size": WEIGHT_BYTES}, "weight_map": {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors",
    "w.weight": "model-00002-of-00002.safetensors", "w.weight_scale_inv": "model-00002-of-00002.safetensors"}})


class Hub(BaseHTTPRequestHandler):
    files: dict[str, dict[str, bytes]] = {}
    private = {"org/private"}
    log: list[dict[str, str]] = []

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _route(self) -> tuple[int, bytes, dict[str, str]]:
        self.log.append({"method": self.command, "path": self.path,
                         "authorization": self.headers.get("authorization", ""),
                         "range": self.headers.get("range", "")})
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, b'{"error": "not found"}', {"X-Error-Code": "RepoNotFound"}
        repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if repo in self.private and self.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, b'{"error": "Invalid credentials in Authorization header"}', {}
        if repo not in self.files:
            return 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}
        body = self.files[repo].get(filename)
        if body is None:
            return 404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"}
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{abs(hash(body)):x}"'}
        rng = self.headers.get("range")
        if rng and self.command == "GET":
            start, end = (int(x) for x in rng.removeprefix("bytes=").split("-"))
            part = body[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(body)}"
            return 206, part, headers
        return 200, body, headers

    def _send(self, with_body: bool) -> None:
        status, body, headers = self._route()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._send(False)

    def do_GET(self) -> None:  # noqa: N802
        self._send(True)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = (REPO / "tests" / "fixtures" / "meta-llama--Llama-3.1-8B.json").read_bytes()
    Hub.files = {"org/model": {"config.json": config, "model.safetensors.index.json": INDEX.encode(),
                               "model-00001-of-00002.safetensors": SHARD1,
                               "model-00002-of-00002.safetensors": SHARD2},
                 "org/private": {"config.json": config}}
    Hub.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "hf-cache"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def kvcalc(endpoint: str, cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    base.update({"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf-home"),
                 "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                 "PYTHONPATH": str(REPO), "COLUMNS": "120", **env})
    return subprocess.run([sys.executable, "-m", "kvcalc", *args], capture_output=True, text=True, env=base,
                          timeout=120, check=False)


def test_fetch_cache_token_and_offline_rerun(hub: tuple[str, Path]) -> None:
    endpoint, cache = hub
    out = kvcalc(endpoint, cache, "estimate", "--config", "org/model", "--seq-len", "1024", "--json",
                 HF_TOKEN=TOKEN)
    assert out.returncode == 0, out.stderr
    # Llama-3.1-8B: 32 layers x 2 x 8 x 128 x 2 B = 131,072 B per token.
    assert json.loads(out.stdout)["total_bytes"] == 131_072 * 1024
    fetched = {entry["path"].rsplit("/", 1)[-1] for entry in Hub.log}
    assert fetched == {"config.json", "model.safetensors.index.json"}  # never a weight
    assert all(entry["authorization"] == f"Bearer {TOKEN}" for entry in Hub.log)  # HF_TOKEN sent
    snap = cache / "models--org--model" / "snapshots" / COMMIT
    assert (snap / "config.json").is_file() and (snap / "model.safetensors.index.json").is_file()
    # Offline rerun: from the cache, no request at all.
    Hub.log.clear()
    again = kvcalc(endpoint, cache, "estimate", "--config", "org/model", "--seq-len", "1024", "--json",
                   HF_HUB_OFFLINE="1")
    assert again.returncode == 0, again.stderr
    assert again.stdout == out.stdout and Hub.log == []
    # fit --offline names the hub id as a model and answers from the cache too.
    fit = kvcalc(endpoint, cache, "fit", "org/model", "--gpu", "h100", "--offline", "--json")
    assert fit.returncode == 0, fit.stderr
    assert Hub.log == []


def test_weights_from_headers_by_range_request(hub: tuple[str, Path]) -> None:
    endpoint, cache = hub
    out = kvcalc(endpoint, cache, "plan", "--config", "org/model", "--weights", "org/model", "--gpu", "h100",
                 "--context", "8192", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["weights_bytes"] == WEIGHT_BYTES
    assert "HTTP range requests" in plan["weights_source"]
    shard_gets = [e for e in Hub.log if e["path"].endswith(".safetensors") and e["method"] == "GET"]
    assert shard_gets and all(e["range"].startswith("bytes=0-") for e in shard_gets)  # headers only
    # Offline: the cached index's metadata.total_size.
    off = kvcalc(endpoint, cache, "plan", "--config", "org/model", "--weights", "org/model", "--gpu", "h100",
                 "--context", "8192", "--json", HF_HUB_OFFLINE="1")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["weights_bytes"] == WEIGHT_BYTES


def test_401_404_and_offline_errors_are_clear(hub: tuple[str, Path]) -> None:
    endpoint, cache = hub
    cases = [
        (("--config", "org/private"), {"HF_TOKEN": "hf_wrong"}, "401 Unauthorized (HF_TOKEN is set but was refused)"),
        (("--config", "org/private"), {}, "401 Unauthorized (no HF_TOKEN is set)"),
        (("--config", "org/missing"), {}, "no such repository"),
        (("--config", "org/never-fetched"), {"HF_HUB_OFFLINE": "1"}, "offline"),
    ]
    for args, env, needle in cases:
        out = kvcalc(endpoint, cache, "estimate", *args, "--seq-len", "16", **env)
        assert out.returncode == 1 and out.stdout == "", (args, out.stderr)
        assert out.stderr.startswith("Error:") and needle in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    ok = kvcalc(endpoint, cache, "estimate", "--config", "org/private", "--seq-len", "16", HF_TOKEN=TOKEN)
    assert ok.returncode == 0, ok.stderr
