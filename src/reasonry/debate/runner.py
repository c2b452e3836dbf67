"""Grow debate trees breadth-first, one round at a time, every model call through `tasks.execute.run_planned`.

Who does what (fixed roles, alternating turns): round 0 — party A answers each topic's question (or the
given answer is used). Round r = 1..R — party B challenges each answer of round r-1 with `questions`
(the fbq template) and/or `rebuttals` (reasoning first, then the list); the selection policy picks which
challenges get answered; party A answers each picked challenge, and those answers are round r's frontier.
So the turns read A, B, A, B, …: A defends its position, B attacks it.

A rerun of the same settings on the same database recomputes the tree from the stored results (cached
requests are not generated again) and writes nodes by (parent, kind, position): it finishes an
interrupted tree and never duplicates a node. When a pass finishes, the run's stored nodes that it did not
save (left by an earlier pass whose failed requests are now retried, growing a different tree) are deleted.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.debate.config import MOVE_KIND, DebateConfig, Party
from reasonry.debate.parse import Parsed, judge_score, parse_answer, parse_challenges
from reasonry.debate.tree import Node, NodeWriter
from reasonry.engines.base import Request
from reasonry.engines.registry import EngineLoader, LazyEngine, load_engine
from reasonry.io.readers import Row
from reasonry.prompts.library import PromptTemplate, load_template
from reasonry.requests import PromptTooLarge, build_request, error_request
from reasonry.store import Store, StoredResult
from reasonry.tasks.execute import Counts, Planned, Reporter, run_planned


@dataclass
class Job:
    """One model call for one node: the node it comes from and where its request is filed in the run."""

    node: Node
    column: str
    request: Request
    produces: str
    move: str = ""
    error: str | None = None  # the prompt could not be built (too large): recorded without a model call


@dataclass
class Templates:
    questions: PromptTemplate
    rebuttals: PromptTemplate
    answer: PromptTemplate
    judge: PromptTemplate

    @classmethod
    def load(cls, config: DebateConfig) -> Templates:
        return cls(load_template(config.questions_template), load_template(config.rebuttal_template),
                   load_template(config.answer_template), load_template(config.judge_template))


class Debate:
    def __init__(self, store: Store, run_id: str, config: DebateConfig, *, templates: Templates | None = None,
                 loader: EngineLoader = load_engine, reporter: Reporter | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.config = config
        self.templates = templates or Templates.load(config)
        self.reporter = reporter or Reporter()
        self.writer = NodeWriter(store, run_id)
        self.counts = Counts()
        self.sizes: dict[int, int] = {}
        self._loader = loader
        self._engines: dict[str, LazyEngine] = {}
        self.roots: list[Node] = []  # the trees grown so far, also when a round fails or is interrupted

    # -- the rounds ----------------------------------------------------------------
    def run(self, topics: list[Row]) -> list[Node]:
        try:
            roots, frontier = self._open(topics)
            for rnd in range(1, self.config.rounds + 1):
                challenges = self._challenge(rnd, frontier)
                frontier = self._answer(rnd, self._select(rnd, challenges))
            self.writer.prune()
        finally:
            for engine in self._engines.values():
                engine.close()
        return roots

    def _open(self, topics: list[Row]) -> tuple[list[Node], list[Node]]:
        """Round 0: a root per topic and party A's first answer (given, or generated now)."""
        party = self.config.party_a
        roots, answers, jobs = [], [], []
        for topic in topics:
            root = Node("root", "", 0, topic.index, text=topic.question, expanded=True)
            answer = self._child(root, "answer", party.name, 0, 0)
            roots.append(root)
            self.roots.append(root)
            answers.append(answer)
            if topic.reference:
                answer.text, answer.model = topic.reference, "given"
            else:
                answer.model = party.spec.label
                variables = self._variables(party, instruction=topic.question, input=topic.input, kind="question")
                jobs.append(self._job(answer, party, self.templates.answer, variables, "answer"))
                answer.request_key = jobs[-1].request.key
        self.writer.save(itertools.chain(roots, (a for a in answers if a.text)))
        results = self._run_phase(party, "round 0 answers", jobs)
        for job in jobs:
            self._fill(job.node, parse_answer(results[job.request.key]))
        self.writer.save(job.node for job in jobs)
        return roots, [a for a in answers if a.text]

    def _challenge(self, rnd: int, frontier: list[Node]) -> list[Node]:
        """Party B's questions and rebuttals on each answer; a request is made only while its tree has room."""
        party, n = self.config.party_b, self.config.breadth
        pending: dict[int, deque[tuple[Node, str]]] = {}
        for answer in frontier:
            pending.setdefault(answer.topic.position, deque()).extend((answer, m) for m in self.config.moves)
        created: list[Node] = []
        while batch := self._reserve(pending, n):
            jobs = [self._challenge_job(party, answer, move) for answer, move in batch]
            results = self._run_phase(party, f"round {rnd} challenges", jobs)
            new: list[Node] = []
            for job in jobs:
                parsed = parse_challenges(results[job.request.key], job.move, n,
                                          require_question=self.config.require_question)
                new += self._challenge_nodes(rnd, party, job, parsed)
                job.node.expanded = True
            self.writer.save(itertools.chain((job.node for job in jobs), new))
            created += new
        return created

    def _reserve(self, pending: dict[int, deque[tuple[Node, str]]], n: int) -> list[tuple[Node, str]]:
        """The next (answer, move) pairs per topic: enough that `n` items each would fill the room left."""
        batch = []
        for topic, pairs in pending.items():
            room, reserved = self._room(topic), 0
            while pairs and reserved < room:
                batch.append(pairs.popleft())
                reserved += n
        return batch

    def _challenge_nodes(self, rnd: int, party: Party, job: Job, parsed: Parsed) -> list[Node]:
        kind = MOVE_KIND[job.move]
        items: list[str | None] = list(parsed.items) if parsed.error is None else [None]
        nodes = []
        for position, item in enumerate(items):
            if self._room(job.node.topic.position) <= 0:
                break
            node = self._child(job.node, kind, party.name, rnd, position)
            node.model, node.request_key, node.text = party.spec.label, job.request.key, item
            node.reasoning, node.raw_text, node.error = parsed.reasoning, parsed.raw_text or None, parsed.error
            nodes.append(node)
        return nodes

    def _select(self, rnd: int, challenges: list[Node]) -> list[Node]:
        """The challenges to answer, per answer: all, K at random (seeded by the answer's path), or top-K judged."""
        policy = self.config.policy
        groups: dict[Node, list[Node]] = {}
        for node in challenges:
            if node.error is None and node.text:
                groups.setdefault(node.parent, []).append(node)  # type: ignore[arg-type]
        if policy.k is None:
            return [node for group in groups.values() for node in group]
        if policy.name == "judge":
            self._judge(rnd, groups)
        selected: list[Node] = []
        for parent, group in groups.items():
            if policy.name == "random":
                rng = random.Random(f"{self.config.seed}:{parent.path}")
                picked = set(rng.sample(range(len(group)), min(policy.k, len(group))))
            else:
                ranked = sorted(range(len(group)), key=lambda i: (-(group[i].score or 0.0), i))
                picked = set(ranked[: policy.k])
            selected += [node for i, node in enumerate(group) if i in picked]
        return selected

    def _judge(self, rnd: int, groups: dict[Node, list[Node]]) -> None:
        """Score every candidate of every answer that has two or more: the scores pick the top K to answer and
        make preference pairs (best vs worst challenge of the same answer) for `export --debate --format dpo`."""
        party = self.config.judge_party
        params = self.config.params.with_(max_new_tokens=self.config.judge_max_new_tokens)
        jobs = []
        for parent, group in groups.items():
            if len(group) > 1:
                for node in group:
                    variables = self._variables(party, challenge=node.text, context=parent.text, kind=node.kind,
                                                question=parent.parent.text if parent.parent else "")
                    jobs.append(self._job(node, party, self.templates.judge, variables, "judge", params))
        results = self._run_phase(party, f"round {rnd} judge", jobs)
        for job in jobs:
            job.node.score = judge_score(results[job.request.key])
        self.writer.save(job.node for job in jobs)

    def _answer(self, rnd: int, selected: list[Node]) -> list[Node]:
        party = self.config.party_a
        jobs = []
        for challenge in selected:
            if self._room(challenge.topic.position) <= 0:
                continue
            answer = self._child(challenge, "answer", party.name, rnd, 0)
            answer.model = party.spec.label
            variables = self._variables(party, instruction=challenge.text, input=challenge.parent.text,  # type: ignore[union-attr]
                                        kind=challenge.kind)
            jobs.append(self._job(answer, party, self.templates.answer, variables, "answer"))
            answer.request_key = jobs[-1].request.key
            challenge.expanded = True
        results = self._run_phase(party, f"round {rnd} answers", jobs)
        for job in jobs:
            self._fill(job.node, parse_answer(results[job.request.key]))
        self.writer.save(itertools.chain((job.node.parent for job in jobs), (job.node for job in jobs)))  # type: ignore[misc]
        return [job.node for job in jobs if job.node.text]

    # -- helpers --------------------------------------------------------------------
    def _room(self, topic: int) -> int:
        return self.config.max_nodes - self.sizes.get(topic, 0)

    def _child(self, parent: Node, kind: str, party: str, rnd: int, position: int) -> Node:
        node = Node(kind, party, rnd, position, parent=parent)
        parent.children.append(node)
        topic = parent.topic.position
        self.sizes[topic] = self.sizes.get(topic, 1) + 1
        return node

    def _challenge_job(self, party: Party, answer: Node, move: str) -> Job:
        template = self.templates.questions if move == "questions" else self.templates.rebuttals
        variables = self._variables(party, str_output_aff=answer.text,
                                    question=answer.parent.text if answer.parent else "", kind=MOVE_KIND[move])
        job = self._job(answer, party, template, variables, move)
        job.move = move
        return job

    def _variables(self, party: Party, **specific: Any) -> dict[str, Any]:
        """Every variable any debate template may use; user templates pick what they need."""
        context = specific.get("context", specific.get("input", specific.get("str_output_aff", "")))
        values: dict[str, Any] = {
            "instruction": "", "input": context, "question": "", "context": context, "str_output_aff": context,
            "challenge": "", "kind": "", "n": self.config.breadth, "language": self.config.language,
            "system": party.system, "party": party.name,
        }
        values.update(specific)
        values["instruction"] = values["instruction"] or values["question"]
        values["question"] = values["question"] or values["instruction"]
        return values

    def _job(self, node: Node, party: Party, template: PromptTemplate, variables: dict[str, Any], what: str,
             params: SamplingParams | None = None) -> Job:
        """The node's request; a prompt over the size cap becomes the node's error, not a crash of the debate."""
        params = params or self.config.params
        column, produces = f"{node.path}>{what}", template.produces
        try:
            prompt = template.render(**variables)
            return Job(node, column, build_request(party.spec, params, prompt=prompt, where=node.path), produces)
        except PromptTooLarge as exc:
            return Job(node, column, error_request(party.spec, params, f"{self.run_id}:{column}"), produces,
                       error=str(exc))

    def _run_phase(self, party: Party, label: str, jobs: list[Job]) -> dict[str, StoredResult | None]:
        """One run_planned() call for all of a phase's requests, so the engine batches them."""
        if not jobs:
            return {}
        planned = [Planned(job.node.topic.position, party.label, job.request, job.produces, column=job.column,
                           error=job.error) for job in jobs]
        engine = self._engine(party.spec)
        self.reporter.start(label, len(planned))
        try:
            counts = run_planned(self.store, self.run_id, engine, party.spec, planned, refresh=self.config.refresh,
                             reporter=self.reporter)
        finally:
            self.reporter.finish()
        self.counts.add(counts)
        return {job.request.key: self.store.get_result(job.request.key) for job in jobs}

    def _engine(self, spec: ModelSpec) -> LazyEngine:
        name = str(spec)
        if name not in self._engines:
            self._engines[name] = LazyEngine(spec, self._loader, self.config.engine_options)
        return self._engines[name]

    @staticmethod
    def _fill(node: Node, parsed: Parsed) -> None:
        node.text, node.reasoning, node.error = parsed.text, parsed.reasoning, parsed.error
        node.raw_text = parsed.raw_text or None
