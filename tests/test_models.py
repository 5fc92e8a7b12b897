"""The VLM policy on tiny random models of every supported architecture (CPU, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlmq.models.arch import TESTED, UnsupportedModelError, arch_for, get_submodule
from vlmq.models.feature_cache import image_hash
from vlmq.models.policy import Policy, PolicyConfig
from vlmq.models.tiny import TINY_ARCHS, build_tiny, save_tiny, tiny_model_type

ARCHS = list(TINY_ARCHS)
CACHED_ARCHS = [a for a in ARCHS if TESTED[tiny_model_type(a)].feature_cache]

PROMPTS = ["go left", "What is the number on the card? Answer with a JSON object please.", "hi"]
RESPONSES = ['{"action": "hit"}', "x", '{"thoughts": "the ball is left", "action": "click(ref=3)"}']


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {a: save_tiny(a, root / a, seed=0) for a in ARCHS}


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rs = np.random.RandomState(seed)
    return [(rs.rand(60 + 4 * i, 80, 3) * 255).astype(np.uint8) for i in range(n)]


def _perturb(pol: Policy, seed: int = 1) -> None:
    """Give LoRA-B and the critic head non-zero values so that adapters matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pol.named_parameters():
            if p.requires_grad:
                big = "lora_B" in n and "lm_head" not in n  # keep logits at a float32-friendly scale
                p.add_(torch.randn(p.shape, generator=g) * (0.5 if big else 0.05))


def _load(tiny_dirs: dict[str, Path], arch: str, **kw: object) -> Policy:
    torch.manual_seed(0)
    return Policy.from_pretrained(tiny_dirs[arch], **kw)


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_shapes_and_dtypes(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch)
    batch = pol.encode(_images(3), PROMPTS, RESPONSES)
    logits, q, q_target = pol(batch)
    B, T = batch["input_ids"].shape
    V = pol.vocab_size
    assert logits.shape == q.shape == q_target.shape == (B, T, V)
    assert logits.dtype == q.dtype == q_target.dtype == torch.float32
    assert logits.requires_grad and q.requires_grad and not q_target.requires_grad
    pos = torch.tensor([[T - 1, 0, 2]] * B)  # heads at chosen positions only
    for full, sel in zip((logits, q, q_target), pol(batch, pos), strict=True):
        torch.testing.assert_close(sel, full[:, [T - 1, 0, 2]])
    h = pol.hidden(batch)
    assert h.shape == (B, T, pol.hidden_size)
    sel = h[batch["response_mask"]]  # gather positions before the vocab-sized matmul
    assert pol.actor_logits(sel).shape == pol.critic_q(sel).shape == pol.target_q(sel).shape == (len(sel), V)
    assert torch.equal(pol.actor_logits(h), logits)
    # default critic init: zero weights, zero bias
    assert torch.count_nonzero(q) == 0
    assert pol.critic_head.bias is not None


@pytest.mark.parametrize("arch", ARCHS)
def test_encode_layouts(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch)
    images = _images(3)
    train = pol.encode(images, PROMPTS, RESPONSES)
    gen = pol.encode(images, PROMPTS)
    am, rm = train["attention_mask"].bool(), train["response_mask"]
    assert "response_mask" not in gen
    assert bool(am[:, 0].all()) and bool(gen["attention_mask"][:, -1].all())  # right vs left padding
    tok = pol.tokenizer
    for b, resp in enumerate(RESPONSES):
        ids = train["input_ids"][b][rm[b]].tolist()
        assert ids == [*tok(resp, add_special_tokens=False)["input_ids"], pol.eot_token_id]
        n = int(am[b].sum())
        assert bool(rm[b, n - 1]) and not bool(rm[b, n:].any())  # response ends at the last real token
        prompt_ids = gen["input_ids"][b][gen["attention_mask"][b].bool()].tolist()
        assert train["input_ids"][b, : len(prompt_ids)].tolist() == prompt_ids
    # the last prompt-only position is the state before the first response token
    with torch.no_grad():
        _perturb(pol)
        h_train, h_gen = pol.hidden(train), pol.hidden(gen)
    first = rm.float().argmax(dim=1)
    before = h_train[torch.arange(3), first - 1]
    torch.testing.assert_close(h_gen[:, -1], before, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_trains_only_adapters_and_critic(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch)
    spec = pol.arch
    lora_modules = {n.split(".lora_")[0] for n, p in pol.named_parameters() if "lora_" in n}
    inner = "model.base_model.model."
    assert lora_modules and all(
        m.startswith(inner + spec.lm_path + ".") or m == inner + "lm_head" for m in lora_modules
    ), lora_modules
    trainable = {n for n, p in pol.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or n.startswith("critic_head.") for n in trainable)
    for path in spec.vision_paths:
        assert not any(p.requires_grad for p in get_submodule(pol.base_model, path).parameters())
    assert not any(p.requires_grad for p in pol.target_head.parameters())
    assert pol.num_trainable == sum(p.numel() for p in pol.trainable_parameters())
    frozen_before = {n: p.detach().clone() for n, p in pol.named_parameters() if not p.requires_grad}
    train_before = {n: p.detach().clone() for n, p in pol.named_parameters() if p.requires_grad}
    pol.train()
    opt = torch.optim.AdamW(pol.trainable_parameters(), lr=1e-2)
    batch = pol.encode(_images(3), PROMPTS, RESPONSES)
    h = pol.hidden(batch)
    m = batch["response_mask"][:, 1:]
    act = batch["input_ids"][:, 1:][m]
    hs = h[:, :-1][m]
    logp = torch.log_softmax(pol.actor_logits(hs), -1).gather(-1, act[:, None]).squeeze(-1)
    q = pol.critic_q(hs).gather(-1, act[:, None]).squeeze(-1)
    loss = -logp.mean() + ((q - 1.0) ** 2).mean()
    loss.backward()
    opt.step()
    for n, p in pol.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
    changed = [
        n for n, p in pol.named_parameters() if n in train_before and not torch.equal(p, train_before[n])
    ]
    assert any("lora_B" in n for n in changed) and any(n.startswith("critic_head") for n in changed)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_greedy_generation_equals_one_by_one(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch)
    _perturb(pol)
    images = _images(3)
    batched = pol.generate(images, PROMPTS, greedy=True, max_new_tokens=6)
    single = [
        pol.generate([im], [p], greedy=True, max_new_tokens=6)[0]
        for im, p in zip(images, PROMPTS, strict=True)
    ]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(len(g.token_ids) == 6 or g.finished for g in batched)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_pass_over_prompt_and_answer_scores_what_generation_chose(
    tiny_dirs: dict[str, Path], arch: str
) -> None:
    """The policy's single pass (``hidden``: positions from the mask, PaliGemma's answer in the causal
    suffix) over prompt + generated tokens gives the logits the KV-cached ``generate`` chose from: the
    greedy tokens are the argmax at every step."""
    pol = _load(tiny_dirs, arch)
    _perturb(pol)
    pol.eval()
    images = _images(3)
    gens = pol.generate(images, PROMPTS, greedy=True, max_new_tokens=5)
    batch = pol.encode(images, PROMPTS)  # left padded, as generate saw it
    n = max(len(g.token_ids) for g in gens)
    new = torch.tensor([g.token_ids + [pol.pad_token_id] * (n - len(g.token_ids)) for g in gens])
    suffix = 1 if pol.arch.prefix_lm else 0
    for k in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"):
        if k in batch:
            tail = new if k == "input_ids" else torch.full_like(new, 1 if k == "attention_mask" else suffix)
            batch[k] = torch.cat([batch[k], tail.to(batch[k].dtype)], dim=1)
    T = batch["input_ids"].shape[1] - n
    with torch.no_grad():
        chosen = pol.actor_logits(pol.hidden(batch))[:, T - 1 : T - 1 + n].argmax(-1)
    for b, g in enumerate(gens):
        assert chosen[b, : len(g.token_ids)].tolist() == g.token_ids


@pytest.mark.parametrize("arch", ARCHS)
def test_encode_of_sampled_ids_scores_what_generation_chose(tiny_dirs: dict[str, Path], arch: str) -> None:
    """``encode(..., response_ids=...)``: the prompt tokens of the text path, then exactly the sampled
    ids (no end-of-turn token added to a cut-off answer), and one pass over them gives the logits the
    greedy ``generate`` chose from."""
    pol = _load(tiny_dirs, arch)
    _perturb(pol)
    pol.eval()
    images = _images(3)
    gens = pol.generate(images, PROMPTS, greedy=True, max_new_tokens=4)
    texts = [g.text for g in gens]
    batch = pol.encode(images, PROMPTS, texts, response_ids=[g.token_ids for g in gens])
    old = pol.encode(images, PROMPTS, texts)
    rm = batch["response_mask"]
    for b, g in enumerate(gens):
        assert batch["input_ids"][b][rm[b]].tolist() == g.token_ids
        n = int(rm[b].float().argmax())  # the first response position
        assert batch["input_ids"][b, :n].tolist() == old["input_ids"][b, :n].tolist()
        if "token_type_ids" in batch and pol.arch.prefix_lm:
            assert bool(batch["token_type_ids"][b][rm[b]].all())
    with torch.no_grad():
        logits = pol.actor_logits(pol.hidden(batch))
    for b, g in enumerate(gens):
        pos = rm[b].nonzero()[:, 0] - 1  # the state before each response token
        assert logits[b, pos].argmax(-1).tolist() == g.token_ids


@pytest.mark.parametrize("arch", ["idefics3", "qwen2_vl"])
def test_generation_stops_at_end_of_turn_and_seeds(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch)
    s1 = pol.generate(_images(2), PROMPTS[:2], temperature=1.0, top_p=0.9, max_new_tokens=5, seed=3)
    s2 = pol.generate(_images(2), PROMPTS[:2], temperature=1.0, top_p=0.9, max_new_tokens=5, seed=3)
    assert [g.token_ids for g in s1] == [g.token_ids for g in s2]
    eot = pol.eot_token_id

    def favour_eot(_m: torch.nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[..., eot] += 1e4
        return out

    handle = pol.lm_head.register_forward_hook(favour_eot)
    try:
        gens = pol.generate(_images(2), PROMPTS[:2], greedy=True, max_new_tokens=5)
    finally:
        handle.remove()
    assert all(g.token_ids == [eot] and g.finished and g.text == "" for g in gens)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip_bit_for_bit(tiny_dirs: dict[str, Path], arch: str, tmp_path: Path) -> None:
    pol = _load(tiny_dirs, arch, lora_r=4, critic_init_std=0.02)
    _perturb(pol)
    pol.update_target(0.5)
    pol.eval()
    batch = pol.encode(_images(2), PROMPTS[:2], RESPONSES[:2])
    with torch.no_grad():
        h = pol.hidden(batch)
        logits, q, qt = pol.actor_logits(h), pol.critic_q(h), pol.target_q(h)
    pol.save(tmp_path / "pol")
    assert (tmp_path / "pol" / "policy_config.json").is_file()
    pol2 = Policy.from_pretrained(tmp_path / "pol", lora_r=16)  # saved adapters fix the LoRA shape
    pol2.eval()
    assert pol2.config == pol.config and pol2.config.lora_r == 4
    with torch.no_grad():
        h2 = pol2.hidden(pol2.encode(_images(2), PROMPTS[:2], RESPONSES[:2]))
        assert torch.equal(pol2.actor_logits(h2), logits)
        assert torch.equal(pol2.critic_q(h2), q)
        assert torch.equal(pol2.target_q(h2), qt)
    # a collector's way: the same base loaded once, then the published weights loaded into it
    pol3 = _load(tiny_dirs, arch, lora_r=4, critic_init_std=0.02).eval()
    with torch.no_grad():
        assert not torch.equal(pol3.critic_q(pol3.hidden(batch)), q)
    pol3.load_weights(tmp_path / "pol")
    with torch.no_grad():
        h3 = pol3.hidden(pol3.encode(_images(2), PROMPTS[:2], RESPONSES[:2]))
        assert torch.equal(pol3.actor_logits(h3), logits) and torch.equal(pol3.critic_q(h3), q)
        assert torch.equal(pol3.target_q(h3), qt)
    with pytest.raises(ValueError, match="another base or shape"):
        _load(tiny_dirs, arch, lora_r=8).load_weights(tmp_path / "pol")
    with pytest.raises(FileNotFoundError, match="not a saved vlmq policy"):
        pol3.load_weights(tmp_path)


@pytest.mark.parametrize("arch", ARCHS)
def test_merge_gives_a_loadable_model_with_same_logits(
    tiny_dirs: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    from transformers import AutoModelForImageTextToText

    pol = _load(tiny_dirs, arch)
    _perturb(pol)
    pol.eval()
    batch = pol.encode(_images(2), PROMPTS[:2], RESPONSES[:2])
    with torch.no_grad():
        h = pol.hidden(batch, use_feature_cache=False)
        logits, q = pol.actor_logits(h), pol.critic_q(h)
    pol.merge(tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    inputs = {k: v for k, v in batch.items() if k not in ("response_mask", "image_hash")}
    spec = pol.arch
    if spec.position_ids_from_mask:
        first = spec.first_position
        inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1 + first).clamp(min=first)
    with torch.no_grad():
        out = merged(**inputs).logits
    am = batch["attention_mask"].bool()
    torch.testing.assert_close(out[am], logits[am], atol=1e-4, rtol=1e-4)
    # the merged folder also loads as a policy base and restores the critic head
    pol2 = Policy.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(pol2.critic_q(pol2.hidden(batch))[am], q[am], atol=1e-4, rtol=1e-4)
    # merging left the live policy untouched
    with torch.no_grad():
        assert torch.equal(pol.actor_logits(pol.hidden(batch, use_feature_cache=False)), logits)


@pytest.mark.parametrize("arch", ARCHS)
def test_tested_table_matches_the_models(tiny_dirs: dict[str, Path], arch: str) -> None:
    """`vlmq models` (arch.TESTED) says what the derived spec does: feature cache, prefix-LM."""
    pol = _load(tiny_dirs, arch, feature_cache_size=3)
    pol.generate(_images(2), PROMPTS[:2], greedy=True, max_new_tokens=2)
    entry = TESTED[tiny_model_type(arch)]
    assert pol.feature_cache_enabled() == entry.feature_cache
    assert (pol.cache_misses, pol.cache_hits) == ((2, 0) if entry.feature_cache else (0, 0))
    assert pol.arch.prefix_lm == entry.prefix_lm
    assert pol.arch.name == tiny_model_type(arch)


@pytest.mark.parametrize("arch", CACHED_ARCHS)
def test_feature_cache_matches_uncached(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch, feature_cache_size=3)
    _perturb(pol)
    batch = pol.encode(_images(3), PROMPTS, RESPONSES)
    ref = pol.hidden(batch, use_feature_cache=False)
    assert torch.equal(pol.hidden(batch), ref)  # fills the cache: same vision batch, same numbers
    assert (pol.cache_misses, pol.cache_hits) == (3, 0)
    assert torch.equal(pol.hidden(batch), ref)  # all from the cache
    assert (pol.cache_misses, pol.cache_hits) == (3, 3)
    # a duplicate image is computed once; a batch larger than the cache still works (LRU bound)
    images = _images(4, seed=1)
    images[3] = images[0].copy()
    batch = pol.encode(images, [*PROMPTS, "again"], [*RESPONSES, "y"])
    assert batch["image_hash"][0] == batch["image_hash"][3] == image_hash(images[0])
    ref = pol.hidden(batch, use_feature_cache=False)
    cached = pol.hidden(batch)
    assert (pol.cache_misses, pol.cache_hits) == (6, 4)
    assert len(pol.feature_cache) <= 3
    # vision batches of different sizes may differ in the last float bits
    torch.testing.assert_close(cached, ref, atol=5e-5, rtol=1e-4)
    # gradients still reach the adapters through cached features
    pol.train()
    pol.critic_q(pol.hidden(batch)).sum().backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for n, p in pol.named_parameters() if "lora_B" in n
    )


@pytest.mark.parametrize("arch", ["idefics3", "qwen2_vl", "llava"])
def test_generation_fills_the_feature_cache(tiny_dirs: dict[str, Path], arch: str) -> None:
    pol = _load(tiny_dirs, arch)
    _perturb(pol)
    nocache = _load(tiny_dirs, arch, feature_cache_size=0)
    nocache.load_state_dict(pol.state_dict())
    images = _images(3)
    gens = pol.generate(images, PROMPTS, greedy=True, max_new_tokens=5)
    assert [g.token_ids for g in gens] == [
        g.token_ids for g in nocache.generate(images, PROMPTS, greedy=True, max_new_tokens=5)
    ]
    assert (pol.cache_misses, pol.cache_hits) == (3, 0)
    pol.hidden(pol.encode(images, PROMPTS, [g.text for g in gens]))  # the learner's pass: all hits
    assert (pol.cache_misses, pol.cache_hits) == (3, 3)


def test_train_vision_adds_vision_adapters_and_disables_cache(tiny_dirs: dict[str, Path]) -> None:
    pol = _load(tiny_dirs, "idefics3", train_vision=True)
    names = [n for n, p in pol.named_parameters() if p.requires_grad]
    assert any("vision_model" in n for n in names) and any("text_model" in n for n in names)
    assert not pol.feature_cache_enabled()


def test_update_target_polyak(tiny_dirs: dict[str, Path]) -> None:
    pol = _load(tiny_dirs, "llava", critic_init_std=0.1)
    with torch.no_grad():
        pol.critic_head.weight.add_(1.0)
    before = pol.target_head.weight.clone()
    pol.update_target(0.25)
    torch.testing.assert_close(pol.target_head.weight, 0.75 * before + 0.25 * pol.critic_head.weight)
    pol.update_target(1.0)
    assert torch.equal(pol.target_head.weight, pol.critic_head.weight)


def test_encoder_decoder_is_a_one_line_error() -> None:
    model, proc = build_tiny("llava")
    model.config.is_encoder_decoder = True
    with pytest.raises(
        UnsupportedModelError, match="'llava' is not supported by vlmq: an encoder-decoder"
    ) as e:
        arch_for(model, proc)
    assert "\n" not in str(e.value)
    assert PolicyConfig.from_dict({"lora_r": 3, "unknown": 1}).lora_r == 3


@pytest.mark.parametrize("arch", ARCHS)
def test_two_training_steps_save_load_and_resume(
    tiny_dirs: dict[str, Path], arch: str, tmp_path: Path
) -> None:
    """Two optimizer steps on the adapters and the critic, a save/load round trip that scores the same,
    and a third step on the reloaded policy (only its adapters and critic move)."""
    pol = _load(tiny_dirs, arch, critic_init_std=0.02)
    batch = pol.encode(_images(2), PROMPTS[:2], RESPONSES[:2])

    def step(p: Policy, opt: torch.optim.Optimizer) -> float:
        p.train()
        m = batch["response_mask"][:, 1:]
        logits, q, _ = p(batch)
        act = batch["input_ids"][:, 1:][m]
        logp = torch.log_softmax(logits[:, :-1][m], -1).gather(-1, act[:, None])
        loss = -logp.mean() + ((q[:, :-1][m].gather(-1, act[:, None]) - 1.0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    opt = torch.optim.AdamW(pol.trainable_parameters(), lr=1e-2)
    losses = [step(pol, opt), step(pol, opt)]
    assert losses[1] < losses[0]
    pol.eval()
    with torch.no_grad():
        ref = pol(batch)
    pol.save(tmp_path / "pol")
    pol2 = Policy.from_pretrained(tmp_path / "pol").eval()
    with torch.no_grad():
        for a, b in zip(pol2(batch), ref, strict=True):
            assert torch.equal(a, b)
    frozen = {n: p.detach().clone() for n, p in pol2.named_parameters() if not p.requires_grad}
    step(pol2, torch.optim.AdamW(pol2.trainable_parameters(), lr=1e-2))
    assert all(torch.equal(p, frozen[n]) for n, p in pol2.named_parameters() if n in frozen)


@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_backbone(tiny_dirs: dict[str, Path], arch: str) -> None:
    """The backbone loads in bfloat16 (as on CUDA), answers, and its heads give float32 values."""
    pol = _load(tiny_dirs, arch, dtype="bfloat16")
    assert TESTED[tiny_model_type(arch)].bf16
    gens = pol.generate(_images(2), PROMPTS[:2], greedy=True, max_new_tokens=3)
    assert all(g.token_ids for g in gens)
    logits, q, _ = pol(pol.encode(_images(2), PROMPTS[:2], RESPONSES[:2]))
    assert logits.dtype == q.dtype == torch.float32 and bool(torch.isfinite(logits).all())


def test_lm_head_adapter_and_merge_of_a_tied_model(tmp_path: Path) -> None:
    """The shipped `tiny` ties its LM head to the input embeddings: LoRA on the head changes the
    output projection only, live and after merging."""
    from transformers import AutoModelForImageTextToText

    pol = Policy.from_pretrained("tiny")
    base = pol.base_model
    assert base.get_output_embeddings().base_layer.weight is base.get_input_embeddings().weight
    assert any(n.startswith("model.base_model.model.lm_head.lora_") for n, _ in pol.named_parameters())
    embeddings = base.get_input_embeddings().weight.detach().clone()
    _perturb(pol)
    pol.eval()
    batch = pol.encode(_images(2), PROMPTS[:2], RESPONSES[:2])
    with torch.no_grad():
        logits = pol.actor_logits(pol.hidden(batch, use_feature_cache=False))
    pol.merge(tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
    assert torch.equal(merged.get_input_embeddings().weight, embeddings)
    inputs = {k: v for k, v in batch.items() if k not in ("response_mask", "image_hash")}
    inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = merged(**inputs).logits
    am = batch["attention_mask"].bool()
    # float32 merge error of a 4-layer pre-trained model; an adapter merged into the tied embeddings
    # as well would change every input embedding and miss by orders of magnitude more
    torch.testing.assert_close(out[am], logits[am], atol=1e-3, rtol=1e-3)
    # the live policy still ties its (unmerged) head to the embeddings
    assert base.get_output_embeddings().base_layer.weight is base.get_input_embeddings().weight


def test_lm_head_adapter_can_be_turned_off(tiny_dirs: dict[str, Path]) -> None:
    pol = _load(tiny_dirs, "idefics3", lora_lm_head=False)
    assert not any("lm_head" in n for n, p in pol.named_parameters() if p.requires_grad)
    assert any("lm_head.lora_" in n for n, _ in _load(tiny_dirs, "idefics3").named_parameters())


def test_joined_image_features_split_per_sample_by_real_tiles() -> None:
    """Idefics/SmolVLM features come joined over the real tiles of all samples (all-zero padding tiles
    dropped): the cache splits them per sample by each sample's real tiles, not evenly."""
    from vlmq.models.arch import FeatureCacheUnsupported, ImageFeatures

    pixels = torch.ones(2, 5, 3, 4, 4)
    pixels[1, 3:] = 0  # sample 1 has 3 real tiles, 2 padding tiles
    assert ImageFeatures._sizes(pixels, 8, 2) == [5, 3]
    assert ImageFeatures._sizes(torch.ones(2, 3, 4, 4), 6, 2) == [3, 3]
    with pytest.raises(FeatureCacheUnsupported):
        ImageFeatures._sizes(torch.ones(2, 3, 4, 4), 7, 2)


def test_vlmq_models_lists_every_tested_type() -> None:
    from typer.testing import CliRunner

    from vlmq.cli import app

    assert {tiny_model_type(a) for a in ARCHS} == set(TESTED)  # every listed type has a tiny model
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    rows = {line.split()[0]: line.split()[1:4] for line in result.output.splitlines()[1:] if line.strip()}
    for mt, t in TESTED.items():
        assert rows[mt] == ["yes" if t.feature_cache else "-", "yes" if t.prefix_lm else "-", "yes"]


def test_cross_attention_model_is_a_one_line_error() -> None:
    """A model type outside the tested list that cannot work (Mllama: the image enters the language model
    through cross-attention) stops with one line naming it and why, not a traceback from transformers."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
                  image_size=28, patch_size=14, max_num_tiles=1, intermediate_layers_indices=[0],
                  vision_output_dim=32, supported_aspect_ratios=[[1, 1]])  # fmt: skip
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=128, cross_attention_layers=[1], pad_token_id=0,
                bos_token_id=1, eos_token_id=2)  # fmt: skip
    model = MllamaForConditionalGeneration(MllamaConfig(vision_config=vision, text_config=text))
    with pytest.raises(
        UnsupportedModelError, match="'mllama' is not supported by vlmq: its language model"
    ) as e:
        arch_for(model, None)
    assert "\n" not in str(e.value)
