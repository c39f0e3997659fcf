"""GGUF files: headers and tensor tables read with the ``gguf`` package, weights exact from the
tensor table, llama.cpp's block sizes and Q4_K_M rules, split files, and the hobbyist's question:
Qwen2.5-7B Q4_K_M on an RTX 4090 with a q8_0 cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvcalc.errors import InvalidConfigError
from kvcalc.planner.plan import PlanRequest, plan
from kvcalc.planner.weights import checkpoint_weights
from kvcalc.registry import get_builtin, load_model

gguf = pytest.importorskip("gguf")

from tests.gguf_writer import qwen25_7b_q4_k_m, type_bytes, write_gguf  # noqa: E402

QWEN_Q4_K_M_BYTES = 4_677_120_000
"""Sum over the 339 tensors of ggml_nbytes (gguf GGML_QUANT_SIZES): q4_k 3,427,909,632 + q6_k
1,247,877,120 + f32 1,333,248. The published Qwen2.5-7B-Instruct-Q4_K_M.gguf is 4.68 GB."""


@pytest.fixture(scope="module")
def qwen_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta, tensors = qwen25_7b_q4_k_m()
    path = tmp_path_factory.mktemp("gguf") / "Qwen2.5-7B-Instruct-Q4_K_M.gguf"
    write_gguf(path, "qwen2", meta, tensors)
    return path


def test_block_table_is_ggml_quant_sizes() -> None:
    from kvcalc.gguf import GGML_BLOCKS

    for name, (block, size) in GGML_BLOCKS.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name.upper()]] == (block, size), name


def test_tensor_table_bytes_exact(qwen_gguf: Path) -> None:
    from kvcalc.gguf import read_gguf

    _, tensors = qwen25_7b_q4_k_m()
    g = read_gguf(qwen_gguf)
    assert len(g.tensors) == len(tensors) == 3 + 28 * 12
    assert g.tensor_bytes == sum(type_bytes(k, s) for _, s, k in tensors) == QWEN_Q4_K_M_BYTES
    assert g.bytes_by_type() == {"q4_k": 3_427_909_632, "q6_k": 1_247_877_120, "f32": 1_333_248}
    # One hand row: attn_q 3584 x 3584 in q4_k = 3584 rows x 14 blocks x 144 B = 7,225,344 B.
    q = next(t for t in g.tensors if t.name == "blk.0.attn_q.weight")
    assert q.n_bytes == 3584 * (3584 // 256) * 144 == 7_225_344


def test_model_from_header(qwen_gguf: Path) -> None:
    model = load_model(str(qwen_gguf))  # told apart by content (the GGUF magic)
    builtin = get_builtin("qwen2.5-7b")
    assert model.layer_specs[0] == builtin.layer_specs[0] and model.num_layers == 28
    assert (model.hidden_size, model.vocab_size, model.intermediate_size) == (3584, 152064, 18944)
    assert model.max_position_embeddings == 32768 and model.architecture == "qwen2"


def test_q4_k_m_preset_matches_the_file(qwen_gguf: Path) -> None:
    # --weight-dtype q4_k_m on the built-in config applies llama-quant.cpp's rules tensor by tensor;
    # the file adds only the q/k/v biases kvcalc's count leaves out: 28 x (3584 + 512 + 512) x 4 B f32.
    est = checkpoint_weights(get_builtin("qwen2.5-7b"), "q4_k_m", "bf16")
    biases = 28 * (3584 + 512 + 512) * 4
    assert est.bytes == QWEN_Q4_K_M_BYTES - biases
    assert est.breakdown["q6_k"] == 1_247_877_120 and est.breakdown["q4_k"] == 3_427_909_632
    # A bare block type: every matrix q4_k (144 B per 256), norms f32; no q6_k.
    pure = checkpoint_weights(get_builtin("qwen2.5-7b"), "q4_k", "bf16")
    assert set(pure.breakdown) == {"q4_k", "f32"}


def test_hobbyist_rtx_4090_q8_0_from_the_file(qwen_gguf: Path, cli) -> None:  # type: ignore[no-untyped-def]
    model = load_model(str(qwen_gguf))
    p = plan(PlanRequest(model=model, engine="llama.cpp", gpu="rtx-4090", kv_dtype="q8_0", max_model_len=32768))
    assert p.weights_bytes == QWEN_Q4_K_M_BYTES and p.weights_source.startswith("GGUF tensor table")
    # q8_0 cache: 28 layers x (K 512 + V 512 values) x 34/32 B = 30,464 B per token; the 4090's
    # budget (usable 25,286,619,955 - weights - 1.5 GiB - 0.5 GiB) = 18,462,016,307 B holds 606,027
    # tokens, so the model's whole 32,768-token context fits (llama.cpp pads n_ctx to 256).
    assert p.kv_budget_bytes == 25_286_619_955 - QWEN_Q4_K_M_BYTES - (3 << 29) - (1 << 29) == 18_462_016_307
    assert p.kv_cache_tokens == 18_462_016_307 // 30_464 == 606_027
    assert p.longest_context_at_batch == 32768
    out = cli("plan", "--config", str(qwen_gguf), "--gpu", "rtx-4090", "--engine", "llama.cpp",
              "--kv-dtype", "q8_0", "--json")
    assert out.exit_code == 0, out.stderr
    assert out.json()["weights_bytes"] == QWEN_Q4_K_M_BYTES and out.json()["weight_dtype"] == "GGUF q4_k_m"
    # --weights model.gguf with the built-in config: the same exact bytes.
    out = cli("plan", "qwen2.5-7b", "--weights", str(qwen_gguf), "--gpu", "rtx-4090", "--engine", "llama.cpp",
              "--json")
    assert out.exit_code == 0 and out.json()["weights_bytes"] == QWEN_Q4_K_M_BYTES


def test_split_gguf_sums_every_part(tmp_path: Path) -> None:
    from kvcalc.gguf import read_gguf

    meta, tensors = qwen25_7b_q4_k_m()
    files = write_gguf(tmp_path / "qwen.gguf", "qwen2", meta, tensors, split_max_tensors=120)
    assert [f.name for f in files] == [f"qwen-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    g = read_gguf(files[0])
    assert g.files == 3 and g.tensor_bytes == QWEN_Q4_K_M_BYTES
    files[2].unlink()
    with pytest.raises(InvalidConfigError, match="missing 1 of 3"):
        read_gguf(files[0])


def test_sliding_window_arch_defaults(tmp_path: Path) -> None:
    meta: dict[str, object] = {"context_length": 8192, "embedding_length": 256, "block_count": 4,
                               "attention.head_count": 4, "attention.head_count_kv": 2, "attention.key_length": 64,
                               "attention.value_length": 64}
    # gemma2 without the keys: llama.cpp's n_swa 4096, period 2 (layers 0 and 2 slide).
    write_gguf(tmp_path / "g2.gguf", "gemma2", meta, [("token_embd.weight", (1024, 256), "q8_0")])
    model = load_model(str(tmp_path / "g2.gguf"))
    assert [s.kind for s in model.layer_specs] == ["sliding", "full", "sliding", "full"]
    assert model.layer_specs[0].window == 4096  # type: ignore[attr-defined]
    # An architecture whose layer pattern kvcalc does not know: refused, not guessed.
    write_gguf(tmp_path / "q.gguf", "qwen2", {**meta, "attention.sliding_window": 4096},
               [("token_embd.weight", (1024, 256), "q8_0")])
    with pytest.raises(InvalidConfigError, match="which layers llama.cpp slides"):
        load_model(str(tmp_path / "q.gguf"))


def test_sliding_window_pattern_from_header(tmp_path: Path) -> None:
    # gemma2-style: every other layer sliding (pattern list: true = SWA), window 4096.
    meta: dict[str, object] = {"context_length": 8192, "embedding_length": 256, "block_count": 4,
                               "attention.head_count": 4, "attention.head_count_kv": 2, "attention.key_length": 64,
                               "attention.value_length": 64, "attention.sliding_window": 4096,
                               "attention.sliding_window_pattern": [True, False, True, False]}
    write_gguf(tmp_path / "g.gguf", "gemma2", meta, [("token_embd.weight", (1024, 256), "q8_0")])
    model = load_model(str(tmp_path / "g.gguf"))
    assert [s.kind for s in model.layer_specs] == ["sliding", "full", "sliding", "full"]


@pytest.mark.parametrize("content", [b"GGUF", b"GGUF\x03\x00\x00\x00" + b"\xff" * 40])
def test_malformed_gguf_is_a_clean_error(tmp_path: Path, content: bytes, cli) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    out = cli("plan", "--config", str(bad), "--gpu", "rtx-4090", "--engine", "llama.cpp")
    assert out.exit_code == 1 and out.stdout == ""
    assert out.stderr.startswith("Error:") and "Traceback" not in out.stderr


def test_missing_architecture_keys_named(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", "llama", {"context_length": 4096}, [("token_embd.weight", (32, 256), "f16")])
    with pytest.raises(InvalidConfigError, match="llama.block_count"):
        load_model(str(tmp_path / "m.gguf"))


def _llama(**cfg: object) -> object:
    from kvcalc.hf import model_from_hf

    base = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}
    return model_from_hf({**base, **cfg}, "test")


def test_q4_k_m_matches_published_llama_bench_sizes() -> None:
    """llama-bench prints the model's tensor bytes ("size"); published runs (geerlingguy/ai-benchmarks
    issues #54 and #53, llama.cpp build 936918514) show TinyLlama-1.1B Q4_K_M at 636.18 MiB and
    Llama-3.2-3B-Instruct Q4_K_M at 1.87 GiB. kvcalc's Q4_K_M rules on the HF configs give the same."""
    from kvcalc.units import GiB, MiB

    tiny = _llama(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                  intermediate_size=5632, vocab_size=32000, max_position_embeddings=2048)
    est = checkpoint_weights(tiny, "q4_k_m", "bf16")  # type: ignore[arg-type]
    assert est.bytes == 667_078_656 and round(est.bytes / MiB, 2) == 636.18  # 636.1758 MiB
    # Llama-3.2-3B ties its embeddings: token_embd takes the output rule (q6_k), as llama.cpp's
    # has_tied_embeddings does. (+ a 256 B f32 rope_freqs tensor kvcalc does not count.)
    l3 = _llama(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8, head_dim=128,
                intermediate_size=8192, vocab_size=128256, max_position_embeddings=131072, tie_word_embeddings=True)
    est = checkpoint_weights(l3, "q4_k_m", "bf16")  # type: ignore[arg-type]
    assert est.bytes == 2_011_539_456 and round(est.bytes / GiB, 2) == 1.87
    # q6_k by hand: token_embd 128,256 rows x 12 blocks x 210 B = 323,205,120; attn_v (1,024 x 12 blocks)
    # and ffn_down (3,072 x 32 blocks) in the 14 use_more_bits layers of 28 (0-2, 5, 8, ..., 23, 24-27):
    # 14 x 2,580,480 + 14 x 20,643,840 = 325,140,480.
    assert est.breakdown["q6_k"] == 323_205_120 + 14 * 1024 * 12 * 210 + 14 * 3072 * 32 * 210 == 648_345_600


def test_mla_and_recurrent_headers(tmp_path: Path) -> None:
    meta: dict[str, object] = {"context_length": 163840, "embedding_length": 7168, "block_count": 2,
                               "attention.head_count": 128, "attention.head_count_kv": 128,
                               "attention.key_length": 192, "attention.value_length": 128,
                               "attention.kv_lora_rank": 512, "attention.q_lora_rank": 1536,
                               "rope.dimension_count": 64}
    write_gguf(tmp_path / "ds.gguf", "deepseek2", meta, [("token_embd.weight", (1024, 7168), "q8_0")])
    model = load_model(str(tmp_path / "ds.gguf"))
    assert model.layer_specs[0].kind == "mla"
    # DeepSeek-V3's latent, as the built-in: (512 + 64) x 2 B per token per layer.
    assert model.layer_specs[0] == get_builtin("deepseek-v3").layer_specs[0].__class__(
        kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536)
    write_gguf(tmp_path / "m.gguf", "mamba", {"context_length": 4096, "ssm.conv_kernel": 4},
               [("token_embd.weight", (1024, 256), "q8_0")])
    with pytest.raises(InvalidConfigError, match="recurrent"):
        load_model(str(tmp_path / "m.gguf"))
