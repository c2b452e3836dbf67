"""Built-in templates reproduce the seed notebooks' prompt text to the character."""

from __future__ import annotations

import pytest

from reasonry.errors import ConfigError, InputError
from reasonry.prompts.library import load_template, role_text
from reasonry.prompts.roles import ROLES

# Seed 000, with the PDF's line-break hyphens ("Eng-lish", "at-tract", "proce-dures") joined back.
SEED_ROLES = {
    "assistant": "You are an AI assistant who is good at providing answers in multiple languages. Even if your users ask questions in Japanese or Chinese, you will translate them into English to answer. You will answer appropriately by referring information called Reasoning.",
    "translator": "You are translator who is fluent in multiple languages.You will answer appropriately by referring information called Reasoning.",
    "creator": "You are creator who create amazing content with your free ideas. You attract readers with your beautiful writing such as novel or advertisement. Even if users ask questions in Japanese or Chinese, you will translate their instructions into English to answer properly. You will answer appropriately by referring information called Reasoning.",
    "logician": "You are an excellent logician and are instructing users on \"thinking procedures for providing better quality reasoning to user-provided questions.\". ",
}


def seed_create_prompts_func(examples: list[str], sys_message: str) -> str:
    """Seed 000's function, verbatim."""
    instruction = examples[0]
    input_text = examples[1]
    if len(input_text) >= 2:
        text = f'''
        <|system|>{sys_message}\n<|instruction|>{instruction}\n<|context|>{input_text}\n<|reasoning|>
        '''
    else:
        text = f'''
        <|system|>{sys_message}\n<|instruction|>{instruction}\n<|reasoning|>
        '''
    return text


alpaca_prompt_reasoning = """Below is an instruction that describes a task, paired with an input that provides further context. You should write a response that appropriately completes the request.
To improve quality of response, you should perform validation before writing. You should create REASONING for validation in advance, and improve the response if necessary.

### Instruction:
{}

### Input:
{}

### Reasoning:
"""

alpaca_prompt_vanilla = """Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

### Instruction:
{}

### Input:
{}

### Response:
"""

alpaca_prompt_special = """Below is an instruction that describes a task, paired with an input that provides further context. You should write a response that appropriately completes the request.
To improve quality of response, you should perform validation before writing. You should create REASONING for validation in advance, and improve the response if necessary.

### Instruction:
{}

### Input:
{}

### Reasoning:
{}

### Response:
"""

FBQ_SEED = r"""You are debating with a friend. Your friend has given you an answer in the 'CONTEXT' field. You must ask him a question based on the answer('CONTEXT').Please create 5 paragraphs based on the text in the following 'CONTEXT' field to guide further discussion towards the root cause. \n
CONTEXT```\n
{{str_output_aff}}\n
```\n
The paragraphs must be 'FACT_BASED_QUESTION', whereas 'FACT_BASED_QUESTION' is defined as follows: \n
- 'FACT_BASED_QUESTION' has two parts, one is topic and the other is question. \n
- The first part of 'FACT_BASED_QUESTION' is topic sentences, which describes the important issue related to the question you want to discuss. The topic sentences should not exceed 150 words. \n
- The second half of 'FACT_BASED_QUESTION' is a question to find the root cause and must end with a "?". \n
- The sentence of topic and question must be consistent with the intent of your question.
- Do not put line break between topic and question in 'FACT_BASED_QUESTION'. \n
- A paragraph of 'FACT_BASED_QUESTION' should begin with the characters 'PARAGRAPH: '. \n
Please output these 5 paragraphs (or FACT_BASED_QUESTIONs) in the type of LIST format. \n
You need to predict user's hidden intent from the following 'CONTEXT' and create a candid answer that matches the user's intent. Subtle and balanced language is not required. Don't worry about taboos in your answers. \n
These 'FACT_BASED_QUESTION' should be detailed which is helpful to find the root cause. Don't write parapraphs which begin with words such as 'In conclusion, In summary', also preface paragraph is not required. Again, each paragraph should begin with 'PARAGRAPH: '. Please answer in English only.
"""

QUESTIONS = ["Find the square root of 156.", "LUNAは白猫ですか？", "Write a letter to invite a birthday party."]
INPUTS = ["", "a", "ab", "A wind turbine is a device that converts wind energy into electrical energy."]


def test_roles_are_the_seed_text() -> None:
    assert ROLES == SEED_ROLES


@pytest.mark.parametrize("role", list(SEED_ROLES))
@pytest.mark.parametrize("input_text", INPUTS)
def test_phi2_matches_seed_function(role: str, input_text: str) -> None:
    template = load_template("phi2")
    for question in QUESTIONS:
        expected = seed_create_prompts_func([question, input_text], SEED_ROLES[role])
        rendered = template.render(system=role_text(role, None), instruction=question, input=input_text)
        assert rendered == expected


def test_phi2_context_only_from_two_characters() -> None:
    template = load_template("phi2")
    assert "<|context|>" not in template.render(system="s", instruction="q", input="x")
    assert "<|context|>xy\n<|reasoning|>" in template.render(system="s", instruction="q", input="xy")


@pytest.mark.parametrize("input_text", INPUTS)
def test_alpaca_layouts_match_seed(input_text: str) -> None:
    reasoning = "まず、ジャックがもともと持っていた梨の数を特定する必要があります。"
    for question in QUESTIONS:
        assert load_template("alpaca-reasoning").render(instruction=question, input=input_text) == \
            alpaca_prompt_reasoning.format(question, input_text)
        assert load_template("alpaca-vanilla").render(instruction=question, input=input_text) == \
            alpaca_prompt_vanilla.format(question, input_text)
        assert load_template("alpaca-special").render(instruction=question, input=input_text, reasoning=reasoning) == \
            alpaca_prompt_special.format(question, input_text, reasoning)


def test_fbq_matches_seed_rendered_by_jinja() -> None:
    import jinja2

    context = "Tokyo's prices rose because the yen fell."
    expected = jinja2.Template(FBQ_SEED).render(str_output_aff=context)
    assert load_template("fbq").render(str_output_aff=context, n=5, language="English") == expected


def test_what_each_template_asks_the_model_for() -> None:
    assert load_template("phi2").produces == "reasoning"
    assert load_template("alpaca-reasoning").produces == "reasoning"
    assert load_template("alpaca-special").needs_reasoning
    assert not load_template("alpaca-vanilla").needs_reasoning


def test_strict_undefined_names_the_missing_variable() -> None:
    with pytest.raises(InputError, match="reasoning"):
        load_template("alpaca-special").render(instruction="q", input="")


def test_user_template_file_and_sandbox(tmp_path) -> None:
    path = tmp_path / "mine.j2"
    path.write_text("Q: {{ instruction }}\n### Response:\n", encoding="utf-8")
    template = load_template(str(path))
    assert template.render(instruction="hi") == "Q: hi\n### Response:\n"
    assert template.produces == "response"
    evil = tmp_path / "evil.j2"
    evil.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    with pytest.raises(ConfigError, match="unsafe"):
        load_template(str(evil)).render()


def test_bad_template_errors_name_the_flag(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--template 'nope.j2'"):
        load_template("nope.j2")
    broken = tmp_path / "broken.j2"
    broken.write_text("{% if %}", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.j2 line 1"):
        load_template(str(broken))
    with pytest.raises(ConfigError, match="--role"):
        role_text("pirate", None)
