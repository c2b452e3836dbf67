"""Debate settings: parties, moves, bounds and the selection policy, checked before any model work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.errors import ConfigError

MOVES = ("questions", "rebuttals")
ANSWER_MOVE = "answer"  # always on: accepted in --moves for readability, it changes nothing
MOVE_KIND = {"questions": "question", "rebuttals": "rebuttal"}
POLICIES = ("all", "random", "judge")


@dataclass(frozen=True)
class Policy:
    """Which challenges of an answer get answered: all of them, K at random, or the judge's top K."""

    name: str
    k: int | None = None

    def __str__(self) -> str:
        return self.name if self.k is None else f"{self.name}:{self.k}"


def parse_policy(text: str) -> Policy:
    raw = text.strip().lower()
    name, _, count = raw.partition(":")
    if name == "all" and not count:
        return Policy("all")
    if name in ("random", "judge") and count.isdigit() and int(count) >= 1:
        return Policy(name, int(count))
    raise ConfigError(f"--select {text!r}: expected all, random:K or judge:K with K a whole number >= 1")


def parse_moves(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else [p for item in text for p in item.split(",")]
    moves: list[str] = []
    for part in (p.strip().lower() for p in parts):
        if part in (ANSWER_MOVE, "answers"):
            continue
        if part not in MOVES:
            raise ConfigError(f"--moves: unknown move {part!r}; choose from {', '.join(MOVES)} (answers are always made)")
        if part not in moves:
            moves.append(part)
    if not moves:
        raise ConfigError("--moves: give at least one of questions, rebuttals")
    return tuple(moves)


@dataclass(frozen=True)
class Party:
    """One side of the debate: its model and the system text its prompts start with ('' for none)."""

    name: str
    spec: ModelSpec
    system: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}={self.spec.label}"


@dataclass
class DebateConfig:
    """How the tree grows. Party A answers (the question, then every challenge); party B challenges."""

    model_a: ModelSpec
    model_b: ModelSpec | None = None
    judge: ModelSpec | None = None
    rounds: int = 1
    breadth: int = 5
    moves: tuple[str, ...] = MOVES
    policy: Policy = field(default_factory=lambda: Policy("all"))
    seed: int = 0
    max_nodes: int = 500
    language: str = "English"
    system_a: str = ""
    system_b: str = ""
    questions_template: str = "fbq"
    rebuttal_template: str = "rebuttal"
    answer_template: str = "debate-answer"
    judge_template: str = "judge"
    require_question: bool = True
    params: SamplingParams = field(default_factory=SamplingParams)
    judge_max_new_tokens: int = 64
    refresh: bool = False
    engine_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        checks = [
            (self.rounds >= 1, "--rounds must be >= 1"),
            (self.breadth >= 1, "--breadth must be >= 1"),
            (self.max_nodes >= 2, "--max-nodes must be >= 2 (the question and its first answer)"),
            (self.judge_max_new_tokens >= 1, "--judge-max-new-tokens must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        parse_moves(list(self.moves))

    @property
    def party_a(self) -> Party:
        return Party("A", self.model_a, self.system_a)

    @property
    def party_b(self) -> Party:
        return Party("B", self.model_b or self.model_a, self.system_b)

    @property
    def judge_party(self) -> Party:
        return Party("judge", self.judge or self.model_a)


def full_tree_size(breadth: int, moves: int, rounds: int, policy: Policy) -> int:
    """Nodes of one topic's tree when every output parses into `breadth` items (before --max-nodes).

    C = moves * breadth challenges per answer, S = answered per answer (C, or min(K, C));
    size = 2 + sum over r = 1..R of (C * S**(r-1) + S**r)  — the root and first answer, then each round's
    challenges and answers. With --max-nodes M the tree has min(M, size) nodes.
    """
    candidates = moves * breadth
    selected = candidates if policy.k is None else min(policy.k, candidates)
    return 2 + sum(candidates * selected ** (r - 1) + selected**r for r in range(1, rounds + 1))


def expected_nodes(breadth: int, moves: int, rounds: int, policy: Policy, max_nodes: int) -> int:
    return min(max_nodes, full_tree_size(breadth, moves, rounds, policy))
