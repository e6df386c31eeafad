"""The ``customer_message`` workflow: an evaluator loop. A writer agent drafts a message to a customer for a given
situation, a judge agent scores it against a rubric (structured output ``{"score": 1..10, "feedback"}``), and the
writer revises with the feedback until the score reaches ``MESSAGE_PASSING_SCORE`` (default 8) or
``MESSAGE_MAX_ROUNDS`` (default 3) rounds are used.

Both settings are snapshotted into the run's input (read with ``durable_agents.run_setting``); a value that is not
a whole number falls back to the default, and they are kept within 1..10. Every round (``round``, ``draft``,
``score``, ``feedback``) is published as it finishes in the custom status member ``rounds``, next to ``stage``
(``writing`` / ``judging`` / ``done``), ``round``, ``passingScore`` and ``maxRounds``. The output is
``{"message", "score", "passed", "roundsUsed", "passingScore", "maxRounds", "rounds"}``.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner
from pydantic import BaseModel, Field, field_validator

import durable_agents

from .workflows_demo import WRITER_MARKER, workflows_demo_responder

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_PASSING_SCORE",
    "Verdict",
    "bp",
    "customer_message_workflow",
    "judge_agent",
    "judge_prompt",
    "writer_agent",
    "writer_prompt",
]

DEFAULT_PASSING_SCORE = 8
DEFAULT_MAX_ROUNDS = 3


class Verdict(BaseModel):
    """The judge's structured output. ``score`` is kept within 1..10 (the schema says so in its description: not
    every provider's strict mode accepts ``minimum`` / ``maximum``)."""

    score: int = Field(description="How well the draft meets the rubric, from 1 (poor) to 10 (perfect)")
    feedback: str = Field(description="What to improve, concretely; or what makes it good")

    @field_validator("score")
    @classmethod
    def _within_range(cls, value: int) -> int:
        return min(10, max(1, value))


WRITER_INSTRUCTIONS = f"""\
{WRITER_MARKER}
- Write only the message: a greeting, the situation in plain words, what happens next, a sign-off.
- Be warm, honest and short (at most 120 words); promise nothing the situation does not say.
- When you get a previous draft with reviewer feedback, rewrite the message so that it meets the feedback."""

JUDGE_RUBRIC = """\
1. Greets the customer.
2. Apologises when something went wrong.
3. Explains the situation correctly and plainly.
4. Says what happens next and when.
5. Polite, short (at most 120 words), ends with a sign-off."""

JUDGE_INSTRUCTIONS = f"""\
You review messages that an online store sends to its customers. Score the draft from 1 to 10 against this rubric
and give short, concrete feedback the writer can act on.
{JUDGE_RUBRIC}"""

writer_agent = Agent(name="writer", instructions=WRITER_INSTRUCTIONS)
judge_agent = Agent(name="judge", instructions=JUDGE_INSTRUCTIONS, output_type=Verdict)

bp = durable_agents.Blueprint(demo_responder=workflows_demo_responder)


def writer_prompt(situation: str, previous: dict[str, Any] | None = None) -> str:
    """The writer's input: the situation, and for a revision the previous round (``draft``, ``score``,
    ``feedback``)."""
    if previous is None:
        return f"Situation:\n{situation}"
    return (f"Situation:\n{situation}\n\nPrevious draft:\n{previous['draft']}\n\n"
            f"Reviewer feedback:\n{previous['feedback']} (score {previous['score']}/10)\n\nRewrite the message.")


def judge_prompt(situation: str, draft: str) -> str:
    """The judge's input: the situation and the draft to score."""
    return f"Situation:\n{situation}\n\nDraft:\n{draft}"


def _whole_setting(value: str | None, default: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = default
    return min(10, max(1, number))


@bp.workflow(
    "customer_message",
    description="Writes a message to a customer for a situation; a judge scores each draft and the writer revises "
                "until it passes.",
    agents=(writer_agent, judge_agent),
    settings=("MESSAGE_PASSING_SCORE", "MESSAGE_MAX_ROUNDS"),
)
def customer_message_workflow(context):
    """Orchestrator of one ``customer_message`` run (module docstring); input ``{"agent", "input", "settings"}``."""
    situation = str(context.get_input()["input"])
    passing = _whole_setting(durable_agents.run_setting("MESSAGE_PASSING_SCORE"), DEFAULT_PASSING_SCORE)
    max_rounds = _whole_setting(durable_agents.run_setting("MESSAGE_MAX_ROUNDS"), DEFAULT_MAX_ROUNDS)
    rounds: list[dict[str, Any]] = []

    def publish(stage: str) -> None:
        context.set_custom_status({"stage": stage, "round": len(rounds) + (stage != "done"),
                                   "passingScore": passing, "maxRounds": max_rounds,
                                   "rounds": [dict(item) for item in rounds]})

    for _ in range(max_rounds):
        publish("writing")
        draft = str(Runner.run_sync(writer_agent, writer_prompt(situation, rounds[-1] if rounds else None))
                    .final_output)
        publish("judging")
        verdict: Verdict = Runner.run_sync(judge_agent, judge_prompt(situation, draft)).final_output
        rounds.append({"round": len(rounds) + 1, "draft": draft, "score": verdict.score,
                       "feedback": verdict.feedback})
        if verdict.score >= passing:
            break
    publish("done")
    last = rounds[-1]
    return {"message": last["draft"], "score": last["score"], "passed": last["score"] >= passing,
            "roundsUsed": len(rounds), "passingScore": passing, "maxRounds": max_rounds,
            "rounds": rounds}
