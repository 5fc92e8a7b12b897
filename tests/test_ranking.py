"""The critic's ranking accuracy (vlmq.train.ranking): probes of held-out states, scored by hand-set critics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlmq.models.policy import Policy
from vlmq.models.prompts import format_response
from vlmq.train.ranking import Probe, blind_accuracy, build_probes, ranking_accuracy, ranking_verdict


def test_probes_hold_the_expert_action_and_the_other_valid_actions() -> None:
    probes = build_probes("gym_cards/NumberLine", states=10)
    assert len(probes) == 10
    for p in probes:
        assert p.expert in ("+", "-") and p.others == [a for a in ("+", "-") if a != p.expert]
        assert "Move the current number" in p.prompt
    again = build_probes("gym_cards/NumberLine", states=10)
    assert [p.expert for p in again] == [p.expert for p in probes]  # seeded


def test_tasks_in_worker_processes_are_not_probed() -> None:
    pytest.importorskip("miniwob")
    assert build_probes("miniwob/click-test", states=4) == []


def _first_diff_tokens(policy: Policy, a: str, b: str) -> tuple[int, int]:
    ta = policy.tokenizer(format_response(a), add_special_tokens=False)["input_ids"]
    tb = policy.tokenizer(format_response(b), add_special_tokens=False)["input_ids"]
    j = next(i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y)
    return ta[j], tb[j]


def test_accuracy_is_one_half_and_zero_for_a_right_flat_and_reversed_critic(tiny_base: Path) -> None:
    policy = Policy.from_pretrained(str(tiny_base))
    probes = build_probes("gym_cards/Blackjack", states=12)
    hit, stand = _first_diff_tokens(policy, "hit", "stand")
    assert ranking_accuracy(policy, probes) == 0.5  # zero weights: every token alike
    assert {p.expert for p in probes} == {"hit", "stand"}
    bias = policy.critic_head.bias
    for expert, other in ((hit, stand), (stand, hit)):
        same = [p for p in probes if (p.expert == "hit") == (expert == hit)]
        for sign, want in ((1.0, 1.0), (-1.0, 0.0)):
            with torch.no_grad():
                bias.zero_()
                bias[expert], bias[other] = sign, -sign
            assert ranking_accuracy(policy, same) == want
    assert ranking_accuracy(policy, []) is None


def test_verdict_names_a_chance_critic_only() -> None:
    assert ranking_verdict(0.51) is not None and "chance" in ranking_verdict(0.51)  # type: ignore[operator]
    assert ranking_verdict(0.8) is None and ranking_verdict(None) is None
    # a critic that always prefers the expert's usual action is at chance on a lopsided task
    assert ranking_verdict(0.7, chance=0.72) is not None and ranking_verdict(0.8, chance=0.72) is None


def test_blind_accuracy_is_the_best_state_independent_order() -> None:
    img = np.zeros((2, 2, 3), dtype=np.uint8)
    probes = [Probe(img, "p", "stand", ["hit"])] * 3 + [Probe(img, "p", "hit", ["stand"])]
    assert blind_accuracy(probes) == 0.75  # always prefer stand: right on 3 of 4
    assert blind_accuracy(build_probes("gym_cards/NumberLine", states=10)) >= 0.5
    assert blind_accuracy([]) == 0.5
