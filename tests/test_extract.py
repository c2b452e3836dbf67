"""Splitting raw model output into reasoning and response."""

from __future__ import annotations

from reasonry.extract import cut_text_after_last_token, split_output, strip_special_tokens


def test_seed_cut_after_last_response_tag() -> None:
    text = "<|reasoning|>I think.<|response|>first<|response|> final answer "
    assert cut_text_after_last_token(text, "<|response|>") == "final answer"
    assert cut_text_after_last_token("no tag", "<|response|>") is None


def test_phi2_output_splits_at_response_tag() -> None:
    reasoning, response = split_output("I consider the square root operation.\n<|response|>About 12.49.", "reasoning")
    assert reasoning == "I consider the square root operation."
    assert response == "About 12.49."


def test_alpaca_reasoning_output_splits_at_response_heading() -> None:
    text = "First, count only fruit: books are not fruit.\n\n### Response:\nThe question is impossible."
    assert split_output(text, "reasoning") == ("First, count only fruit: books are not fruit.",
                                               "The question is impossible.")


def test_reasoning_only_when_model_stops_early() -> None:
    assert split_output("Only a reasoning here.", "reasoning") == ("Only a reasoning here.", None)
    assert split_output("Only a response here.", "response") == (None, "Only a response here.")


def test_think_blocks() -> None:
    assert split_output("<think>\nweigh it\n</think>\n\nThe answer.", "response") == ("weigh it", "The answer.")
    assert split_output("prefilled thoughts</think>answer", "response") == ("prefilled thoughts", "answer")
    assert split_output("<think>never closed", "response") == ("never closed", None)


def test_model_running_into_a_new_example_is_cut() -> None:
    reasoning, response = split_output("Reason.<|response|>Answer.\n<|system|>You are…<|instruction|>next", "reasoning")
    assert response == "Answer."


def test_special_tokens_stripped_but_markers_kept() -> None:
    raw = "Reason<|response|>Answer<|im_end|><|endoftext|>"
    cleaned = strip_special_tokens(raw, ["<|im_end|>", "<|endoftext|>", "<|response|>"])
    assert cleaned == "Reason<|response|>Answer"
