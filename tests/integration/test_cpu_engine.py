"""The cpu engine: GGUF codes read exactly, kernels equal float products, the engine's
contract (the conformance suite, batching), runtime LoRA, and the real default model's
greedy answers equal to the transformers engine's fp32 ones."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bot.llm.base import ChatMessage, LanguageModel
from bot.llm.cpu.codes import Codes, decode
from bot.llm.cpu.engine import CpuEngine
from bot.llm.cpu.kernels import QLinear, load
from bot.llm.transformers_engine import TransformersEngine
from bot.llm.weights import DEFAULT, join_and_verify, part_paths, smollm2_gguf
from bot.settings import DEFAULT_MODEL, LLMSettings, Settings
from tests.integration.llm_conformance import LanguageModelConformance
from tests.integration.test_batching import PROMPTS, collect

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "models"


@pytest.fixture(scope="module")
def default_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("gguf") / DEFAULT.gguf_name
    join_and_verify(part_paths(DEFAULT), target, DEFAULT)
    return target


def _check_exact(gguf: Path) -> set[str]:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    seen: set[str] = set()
    for tensor in GGUFReader(gguf).tensors:
        kind = tensor.tensor_type.name
        if len(tensor.shape) < 2 or kind in seen or kind in ("F32", "F16"):
            continue
        seen.add(kind)
        floats = dequantize(tensor.data, tensor.tensor_type)
        codes = decode(kind, tensor.data, *floats.shape, lambda floats=floats: floats)
        assert codes.exact, kind
        assert np.array_equal(codes.dequantize(), floats), f"{tensor.name} ({kind})"
    return seen


def test_codes_are_the_ggufs_own_weights_bit_for_bit(default_gguf: Path) -> None:
    assert _check_exact(default_gguf) == {"Q8_0", "Q5_0", "Q4_K", "Q6_K"}
    assert _check_exact(smollm2_gguf()) >= {"Q4_1"}  # offsets


def test_an_unknown_block_type_is_requantized_and_marked_inexact() -> None:
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    codes = decode("IQ2_XS", np.zeros(1, np.uint8), 8, 64, lambda: w)
    assert not codes.exact
    assert np.abs(codes.dequantize() - w).max() < np.abs(w).max() / 100


@pytest.mark.parametrize(("group", "offsets"), [(32, False), (32, True), (16, False)])
@pytest.mark.parametrize("rows", [1, 3, 8, 9, 40])
def test_kernel_equals_the_float_product(group: int, offsets: bool, rows: int) -> None:
    rng = np.random.default_rng(rows * group)
    n, k = 72, 256
    codes = Codes(
        rng.integers(-32, 32, (n, k), dtype=np.int8),
        rng.random((n, k // group), dtype=np.float32) * 0.01,
        (rng.standard_normal((n, k // group)).astype(np.float32) * 0.01) if offsets else None,
        group,
    )
    bias = torch.randn(n)
    layer = QLinear(codes, bias, load(CACHE))
    x = torch.randn(rows, k)
    expected = x @ torch.from_numpy(codes.dequantize()).T + bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x.view(1, rows, k)), expected.view(1, rows, n))
    if rows == 3:  # each row computed alone gives the same bits: batch-invariant
        alone = torch.cat([layer(x[i : i + 1]) for i in range(rows)])
        assert torch.equal(alone, layer(x))


def _cpu(model: str, cache: Path, **more: Any) -> CpuEngine:
    engine = CpuEngine(LLMSettings(model=model, engine="cpu", **more), cache)
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def tiny_cpu_engine(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CpuEngine]:
    # A transformers model: its weights are re-quantized to int8 groups once.
    engine = _cpu(str(tiny_model_dir), tmp_path_factory.mktemp("cache"), max_batch_size=1)
    yield engine
    asyncio.run(engine.close())


class TestCpuEngineConformance(LanguageModelConformance):
    @pytest.fixture
    def engine(self, tiny_cpu_engine: CpuEngine) -> LanguageModel:
        return tiny_cpu_engine


async def test_batched_answers_equal_unbatched(tiny_model_dir: Path, tmp_path: Path) -> None:
    engine = await asyncio.to_thread(_cpu, str(tiny_model_dir), tmp_path, max_batch_size=4)
    try:
        alone = [await collect(engine, p, 24) for p in PROMPTS]
        together = await asyncio.gather(*(collect(engine, p, 24) for p in PROMPTS))
        assert engine.stats.steps_total < len(PROMPTS) * 23 + 4 * 23
    finally:
        await engine.close()
    assert list(together) == alone
    assert len(set(alone)) == len(PROMPTS)


def _random_adapter(gguf: Path, out: Path) -> None:
    """A LoRA adapter with random (non-zero) A and B on the model's attention and MLP."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.mul_(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft: no config.json beside a GGUF, not our concern
        model.save_pretrained(out)


async def test_a_lora_adapter_at_run_time_answers_like_the_merged_model(tmp_path: Path) -> None:
    from bot.llm.weights import ensure_gguf_model

    gguf = smollm2_gguf()
    adapter = tmp_path / "adapter"
    await asyncio.to_thread(_random_adapter, gguf, adapter)
    question = [ChatMessage("user", "Write two sentences about the sea.")]
    merged = TransformersEngine(
        LLMSettings(model=str(ensure_gguf_model(gguf, CACHE)), adapter=adapter, dtype="float32"),
        CACHE,
    )
    await asyncio.to_thread(merged.warm_up)
    runtime = await asyncio.to_thread(_cpu, str(gguf), CACHE, adapter=adapter)
    plain = await asyncio.to_thread(_cpu, str(gguf), CACHE)
    try:
        expected = await collect(merged, question, 24)
        assert await collect(runtime, question, 24) == expected
        assert await collect(plain, question, 24) != expected
    finally:
        for engine in (merged, runtime, plain):
            await engine.close()


GROUNDED = [
    [
        ChatMessage(
            "system",
            "Answer only from the passage. Passage: Refunds are issued within 5 business days "
            "to the original payment method. Express shipping costs $10.95 and arrives in 2 "
            "days; standard shipping is free over $50.",
        ),
        ChatMessage("user", question),
    ]
    for question in (
        "how fast do refunds arrive?",
        "what does express shipping cost and is standard free?",
        "Can I get my refund as store credit?",
    )
]


@pytest.mark.slow
async def test_the_default_models_greedy_answers_equal_the_fp32_transformers_ones() -> None:
    """Faithful: the same model, the same answers, alone and four at once."""
    cache = Settings().model_cache_dir  # shared with the other tests of the default model
    reference = TransformersEngine(LLMSettings(engine="transformers", dtype="float32"), cache)
    await asyncio.to_thread(reference.warm_up)
    try:
        expected = [await collect(reference, p, 48) for p in GROUNDED]
    finally:
        await reference.close()
    engine = await asyncio.to_thread(_cpu, DEFAULT_MODEL, cache)
    try:
        alone = [await collect(engine, p, 48) for p in GROUNDED]
        together = await asyncio.gather(*(collect(engine, p, 48) for p in GROUNDED * 2))
    finally:
        await engine.close()
    assert alone == expected
    assert list(together) == expected * 2
    assert len(set(expected)) == len(GROUNDED)
