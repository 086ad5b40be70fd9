import json
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest

from tests.fakes.anthropic import Error, FakeAnthropic, Final, Sleep, ToolCall, Turn

API_KEY = "sk-ant-fake-0123456789"
# A current model: the fake refuses unknown and retiring ones, as the API does once they retire.
MODEL = "claude-sonnet-4-6"
TOOLS = [
    {
        "name": "read_file",
        "description": "Read a file from the repository.",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
    {
        "name": "run",
        "description": "Run a shell command in the sandbox.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    },
]


@pytest.fixture
def fake():
    with FakeAnthropic(API_KEY) as fake:
        yield fake


@pytest.fixture
def client(fake):
    with anthropic.Anthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=0) as client:
        yield client


def ask(client, instruction, history=()):
    return client.messages.create(
        model=MODEL,
        max_tokens=1024,
        tools=TOOLS,
        messages=[{"role": "user", "content": instruction}, *history],
    )


def answer(response, outputs, is_error=False):
    """The history a runner appends after running the response's tool calls."""
    tool_uses = [block for block in response.content if block.type == "tool_use"]
    results = [
        {"type": "tool_result", "tool_use_id": tool_use.id, "content": output, "is_error": is_error}
        for tool_use, output in zip(tool_uses, outputs)
    ]
    return [
        {"role": "assistant", "content": response.content},
        {"role": "user", "content": results},
    ]


def converse(client, instruction, outputs_by_tool):
    """Plays the runner: answers every tool call until the model ends its turn."""
    history = []
    while True:
        response = ask(client, instruction, history)
        if response.stop_reason == "end_turn":
            return response
        outputs = [outputs_by_tool[block.name] for block in response.content if block.type == "tool_use"]
        history += answer(response, outputs)


def two_turn_script(expect="# async-code", expect_error=None):
    return [
        Turn([ToolCall("read_file", {"path": "README.md"}, expect=expect, expect_error=expect_error)], text="Reading."),
        Final("Done."),
    ]


def test_plays_a_tool_call_then_a_final_answer(fake, client):
    fake.add_script("fix the README", two_turn_script())

    first = ask(client, "Please fix the README typo")

    assert first.stop_reason == "tool_use"
    assert first.model == MODEL
    assert first.id.startswith("msg_")
    text, tool_use = first.content
    assert (text.type, text.text) == ("text", "Reading.")
    assert (tool_use.type, tool_use.name, tool_use.input) == ("tool_use", "read_file", {"path": "README.md"})
    assert tool_use.id.startswith("toolu_")

    final = ask(client, "Please fix the README typo", answer(first, ["# async-code\nA GitHub App."]))

    assert final.stop_reason == "end_turn"
    assert final.stop_sequence is None
    assert [(block.type, block.text) for block in final.content] == [("text", "Done.")]
    assert fake.failures == []
    assert fake.requests[1]["json"]["messages"][-1]["content"][0]["tool_use_id"] == tool_use.id
    assert fake.requests[1]["json"]["messages"][-1]["content"][0]["content"] == "# async-code\nA GitHub App."


def test_responses_carry_usage_that_adds_up(fake, client):
    fake.add_script("fix the README", two_turn_script())

    first = ask(client, "fix the README")
    final = ask(client, "fix the README", answer(first, ["# async-code"]))

    for response in (first, final):
        assert response.usage.input_tokens > 0
        assert response.usage.output_tokens > 0
    assert final.usage.input_tokens > first.usage.input_tokens
    assert fake.total_usage() == {
        "input_tokens": first.usage.input_tokens + final.usage.input_tokens,
        "output_tokens": first.usage.output_tokens + final.usage.output_tokens,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
    }


def test_a_step_can_report_the_usage_it_is_given_cache_tokens_included(fake, client):
    usage = {"input_tokens": 12, "output_tokens": 34, "cache_creation_input_tokens": 560,
             "cache_read_input_tokens": 7800}
    fake.add_script("fix the README", [Final("Done.", usage=usage)])
    response = ask(client, "fix the README")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 34)
    assert response.usage.cache_creation_input_tokens == 560
    assert response.usage.cache_read_input_tokens == 7800
    assert fake.total_usage() == usage


def test_records_requests_without_the_api_key(fake, client):
    fake.add_script("fix the README", two_turn_script())

    ask(client, "fix the README")

    [recorded] = fake.requests
    assert recorded["path"] == "/v1/messages"
    assert recorded["status"] == 200
    assert recorded["json"]["model"] == MODEL
    assert recorded["headers"]["anthropic-version"]
    assert API_KEY not in json.dumps(fake.requests)


@pytest.mark.parametrize(
    ("step", "content", "is_error"),
    [
        (two_turn_script(expect="# async-code"), [{"type": "text", "text": "# async-code"}], False),
        (two_turn_script(expect=lambda text: text.startswith("# ")), "# async-code", False),
        (two_turn_script(expect="No such file", expect_error=True), "No such file: README.md", True),
    ],
    ids=["text-blocks", "callable", "expected-error"],
)
def test_accepts_tool_results_that_meet_the_expectation(fake, client, step, content, is_error):
    fake.add_script("fix the README", step)

    first = ask(client, "fix the README")
    final = ask(client, "fix the README", answer(first, [content], is_error=is_error))

    assert final.stop_reason == "end_turn"
    assert fake.failures == []


@pytest.mark.parametrize(
    ("step", "content", "is_error", "complaint"),
    [
        (two_turn_script(expect="# async-code"), "nothing useful", False, "lacks '# async-code'"),
        (two_turn_script(expect=lambda text: text.startswith("# ")), "nothing useful", False, "refused"),
        (two_turn_script(expect=None, expect_error=True), "# async-code", False, "is_error=False"),
    ],
    ids=["missing-text", "callable-refuses", "is-error-differs"],
)
def test_records_and_refuses_tool_results_that_miss_the_expectation(fake, client, step, content, is_error, complaint):
    fake.add_script("fix the README", step)
    first = ask(client, "fix the README")

    with pytest.raises(anthropic.BadRequestError):
        ask(client, "fix the README", answer(first, [content], is_error=is_error))

    [failure] = fake.failures
    assert complaint in failure


@pytest.mark.parametrize(
    "wrong_ids",
    [["toolu_0000"], [], None],
    ids=["wrong-id", "missing", "extra"],
)
def test_records_and_refuses_tool_results_that_do_not_answer_the_tool_uses(fake, client, wrong_ids):
    fake.add_script("fix the README", two_turn_script())
    first = ask(client, "fix the README")
    history = answer(first, ["# async-code"])
    results = history[1]["content"]
    if wrong_ids is None:
        results.append({"type": "tool_result", "tool_use_id": "toolu_extra", "content": "# async-code"})
    else:
        history[1]["content"] = [{**result, "tool_use_id": id} for result, id in zip(results, wrong_ids)]

    with pytest.raises(anthropic.BadRequestError) as raised:
        ask(client, "fix the README", history)

    [failure] = fake.failures
    assert "do not answer the tool_use ids" in failure
    assert raised.value.body["error"]["type"] == "invalid_request_error"


def test_records_and_refuses_an_altered_assistant_turn(fake, client):
    fake.add_script("fix the README", two_turn_script())
    first = ask(client, "fix the README")
    tool_use = first.content[1]
    altered = [{"type": "tool_use", "id": tool_use.id, "name": "read_file", "input": {"path": "/etc/passwd"}}]
    history = [
        {"role": "assistant", "content": altered},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "# async-code"}]},
    ]

    with pytest.raises(anthropic.BadRequestError):
        ask(client, "fix the README", history)

    [failure] = fake.failures
    assert "not what the fake sent" in failure


def credentials(api_key, header):
    # The SDK sends api_key as a bearer token; x-api-key is the API's other accepted header.
    if header == "authorization":
        return {"api_key": api_key}
    return {"api_key": None, "default_headers": {"x-api-key": api_key}}


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_accepts_the_api_key_in_either_header(fake, header):
    fake.add_script("fix the README", two_turn_script())

    with anthropic.Anthropic(base_url=fake.base_url, max_retries=0, **credentials(API_KEY, header)) as client:
        assert ask(client, "fix the README").stop_reason == "tool_use"


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_refuses_a_wrong_api_key(fake, header):
    fake.add_script("fix the README", two_turn_script())

    with anthropic.Anthropic(base_url=fake.base_url, max_retries=0, **credentials("sk-ant-wrong", header)) as client:
        with pytest.raises(anthropic.AuthenticationError) as raised:
            ask(client, "fix the README")

    assert raised.value.body["error"]["type"] == "authentication_error"
    [recorded] = fake.requests
    assert recorded["status"] == 401
    assert "sk-ant-wrong" not in json.dumps(recorded)


def test_answers_a_scripted_error_on_every_retry(fake):
    fake.add_script("fix the README", [Error(500, "api_error", "Internal server error")])

    with anthropic.Anthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=1) as client:
        with pytest.raises(anthropic.InternalServerError) as raised:
            ask(client, "fix the README")

    assert raised.value.status_code == 500
    assert raised.value.body["error"]["message"] == "Internal server error"
    assert [recorded["status"] for recorded in fake.requests] == [500, 500]
    assert [recorded["headers"]["x-stainless-retry-count"] for recorded in fake.requests] == ["0", "1"]
    # A scripted error is the API's doing, not the runner's.
    assert fake.failures == []


def test_retry_after_ms_shortens_the_sdk_backoff(fake):
    fake.add_script("fix the README", [Error(529, "overloaded_error", "Overloaded", retry_after_ms=1)])
    started = time.monotonic()

    with anthropic.Anthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=2) as client:
        with pytest.raises(anthropic.OverloadedError):
            ask(client, "fix the README")

    # Without the header the SDK would back off at least 0.375 s + 0.75 s.
    assert time.monotonic() - started < 1.0
    assert len(fake.requests) == 3


def test_concurrent_conversations_play_their_own_scripts(fake, client):
    delay = 0.4
    fake.add_script(
        "task A",
        [Sleep(delay, Turn([ToolCall("read_file", {"path": "a.py"}, expect="alpha")])), Final("A done.")],
    )
    fake.add_script(
        "task B",
        [Sleep(delay, Turn([ToolCall("run", {"command": "make b"}, expect="beta")])), Final("B done.")],
    )
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(converse, client, "Work on task A", {"read_file": "alpha"})
        b = pool.submit(converse, client, "Work on task B", {"run": "beta"})
        finals = [a.result().content[0].text, b.result().content[0].text]

    elapsed = time.monotonic() - started
    assert finals == ["A done.", "B done."]
    assert fake.failures == []
    assert len(fake.requests) == 4
    # Both slow turns overlapped rather than queueing behind each other.
    assert delay <= elapsed < 2 * delay


@pytest.mark.parametrize(
    ("instruction", "history_turns", "complaint"),
    [
        ("refactor everything", 0, "no script matches"),
        ("fix the README", 2, "is exhausted"),
    ],
    ids=["unmatched", "exhausted"],
)
def test_records_and_refuses_requests_beyond_the_scripts(fake, client, instruction, history_turns, complaint):
    fake.add_script("fix the README", two_turn_script())
    history = []
    for _ in range(history_turns):
        response = ask(client, instruction, history)
        if response.stop_reason == "tool_use":
            history += answer(response, ["# async-code"])
        else:
            history += [{"role": "assistant", "content": response.content}, {"role": "user", "content": "More?"}]

    with pytest.raises(anthropic.BadRequestError):
        ask(client, instruction, history)

    [failure] = fake.failures
    assert complaint in failure


def test_a_streamed_request_gets_the_same_message_as_server_sent_events(fake, client):
    fake.add_script("fix the README", [
        Turn([ToolCall("read_file", {"path": "README.md"}, expect="# Project")], text="Reading."),
        Final("The README's typo is fixed; nothing else changed.")])
    with client.messages.stream(model=MODEL, max_tokens=1024, tools=TOOLS,
                                messages=[{"role": "user", "content": "fix the README"}]) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    # The SDK put the tool call's input together from its pieces.
    text_block, tool_use = first.content
    assert text_block.text == "Reading."
    assert (tool_use.type, tool_use.name, tool_use.input) == ("tool_use", "read_file",
                                                             {"path": "README.md"})
    assert first.stop_reason == "tool_use" and first.usage.output_tokens > 1
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("input_json") > 1 and "content_block_stop" in kinds

    history = answer(first, ["# Project"])
    with client.messages.stream(model=MODEL, max_tokens=1024, tools=TOOLS, messages=[
            {"role": "user", "content": "fix the README"}, *history]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == "The README's typo is fixed; nothing else changed."
    assert final.stop_reason == "end_turn" and fake.failures == []
    assert [request["json"]["stream"] for request in fake.requests] == [True, True]


def test_refuses_a_stream_flag_that_is_not_a_boolean(fake, client):
    fake.add_script("fix the README", two_turn_script())

    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=1024, tools=TOOLS,
                               messages=[{"role": "user", "content": "fix the README"}],
                               extra_body={"stream": "yes"})

    [failure] = fake.failures
    assert "stream" in failure


def test_refuses_a_tool_call_the_request_does_not_declare(fake, client):
    fake.add_script("fix the README", two_turn_script())

    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model=MODEL,
            max_tokens=1024,
            tools=[tool for tool in TOOLS if tool["name"] != "read_file"],
            messages=[{"role": "user", "content": "fix the README"}],
        )

    [failure] = fake.failures
    assert "read_file" in failure


@pytest.mark.filterwarnings("ignore:The model:DeprecationWarning")  # the SDK's own notice
@pytest.mark.parametrize("model", ["claude-scripted", "claude-2.1", "claude-sonnet-4-5"])
def test_an_unknown_or_retiring_model_is_not_found(fake, client, model):
    fake.add_script("hello", [Final("hi")])
    with pytest.raises(anthropic.NotFoundError, match=model):
        client.messages.create(model=model, max_tokens=16,
                               messages=[{"role": "user", "content": "hello"}])


def test_the_default_model_is_current():
    from app.settings import DEFAULT_MODEL
    from tests.fakes.anthropic import CURRENT_MODELS

    assert DEFAULT_MODEL in CURRENT_MODELS


EPHEMERAL = {"type": "ephemeral"}
# About 1,500 tokens by the fake's count: long enough to be cached.
LONG_SYSTEM = "You review code with care. " * 220


def cached_ask(client, instruction, history=(), *, system=LONG_SYSTEM, marked=True, tools=TOOLS):
    """A request with breakpoints on the system prompt and the newest user message, as an agent sends it."""
    control = {"cache_control": EPHEMERAL} if marked else {}
    messages = [{"role": "user", "content": [{"type": "text", "text": instruction}]}, *history]
    last = messages[-1]
    messages[-1] = {**last, "content": [*last["content"][:-1], {**last["content"][-1], **control}]}
    return client.messages.create(
        model=MODEL, max_tokens=1024, tools=tools,
        system=[{"type": "text", "text": system, **control}], messages=messages,
    )


def prompt_tokens(usage):
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def test_a_prefix_is_written_to_the_cache_once_and_then_read(fake, client):
    fake.add_script("fix the README", two_turn_script())

    first = cached_ask(client, "fix the README")
    final = cached_ask(client, "fix the README", answer(first, ["# async-code"]))

    assert fake.failures == []
    # The first request writes everything up to its last breakpoint: all of it.
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation_input_tokens > 1024 and first.usage.input_tokens == 0
    # The second reads that and writes only what it adds.
    assert final.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert 0 < final.usage.cache_creation_input_tokens < first.usage.cache_creation_input_tokens
    assert final.usage.cache_creation.ephemeral_5m_input_tokens == final.usage.cache_creation_input_tokens
    assert fake.total_usage()["cache_read_input_tokens"] == final.usage.cache_read_input_tokens


def test_breakpoints_change_how_the_prompt_is_billed_not_how_long_it_is(fake, client):
    fake.add_script("fix the README", two_turn_script())
    fake.add_script("fix the readme", two_turn_script())  # as long, and another script's cache

    cached = cached_ask(client, "fix the README")
    plain = cached_ask(client, "fix the readme", marked=False)

    assert plain.usage.cache_creation_input_tokens == plain.usage.cache_read_input_tokens == 0
    assert prompt_tokens(cached.usage) == plain.usage.input_tokens  # the instructions are as long


def test_the_cache_belongs_to_a_script(fake, client):
    fake.add_script("fix the README", two_turn_script())
    fake.add_script("fix the docs", two_turn_script())

    cached_ask(client, "fix the README")
    other = cached_ask(client, "fix the docs")

    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens > 0


def test_a_prefix_shorter_than_the_minimum_is_not_cached(fake, client):
    fake.add_script("fix the README", two_turn_script())

    first = cached_ask(client, "fix the README", system="Be brief.")
    final = cached_ask(client, "fix the README", answer(first, ["# async-code"]), system="Be brief.")

    for response in (first, final):
        assert response.usage.cache_creation_input_tokens == response.usage.cache_read_input_tokens == 0
        assert response.usage.input_tokens > 0


def test_an_entry_is_found_only_within_20_blocks_before_a_breakpoint(fake, client):
    many = [ToolCall("read_file", {"path": f"{n}.md"}) for n in range(10)]
    fake.add_script("fix the README", [Turn(many, text="Reading."), Final("Done.")])
    fake.add_script("fix the docs", [Turn(many), Final("Done.")])

    def second_read(instruction):
        first = cached_ask(client, instruction)
        outputs = ["# async-code"] * len([block for block in first.content if block.type == "tool_use"])
        return first, cached_ask(client, instruction, answer(first, outputs))

    # The new breakpoint is 20 blocks (10 tool_use, 10 tool_result) after the cached one: found.
    first, final = second_read("fix the docs")
    assert final.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    # A text block before the calls puts it 21 blocks back: out of reach, written again.
    first, final = second_read("fix the README")
    assert 0 < final.usage.cache_read_input_tokens < first.usage.cache_creation_input_tokens  # tools, system
    assert fake.failures == []


def five_breakpoints():
    tools = [{**tool, "cache_control": EPHEMERAL} for tool in TOOLS]
    system = [{"type": "text", "text": "Be brief.", "cache_control": EPHEMERAL}]
    content = [{"type": "text", "text": "fix the README", "cache_control": EPHEMERAL},
               {"type": "text", "text": "Thanks.", "cache_control": EPHEMERAL}]
    return {"tools": tools, "system": system, "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(five_breakpoints, "A maximum of 4 blocks with cache_control may be provided. Found 5.",
                     id="five-breakpoints"),
        pytest.param(lambda: {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "persistent"}}]},
                     "system.0.cache_control.type: Input tag 'persistent' found using 'type' does not match any "
                     "of the expected tags: 'ephemeral'", id="unknown-type"),
        pytest.param(lambda: {"messages": [{"role": "user", "content": [
                         {"type": "text", "text": "fix the README"},
                         {"type": "text", "text": "", "cache_control": EPHEMERAL}]}]},
                     "messages.0.content.1.text: cache_control cannot be set for empty text blocks",
                     id="empty-text"),
        pytest.param(lambda: {"cache_control": EPHEMERAL}, "automatic caching", id="automatic-caching"),
    ],
)
def test_refuses_cache_control_the_api_refuses(fake, client, change, message):
    fake.add_script("fix the README", two_turn_script())
    request = {"model": MODEL, "max_tokens": 1024, "tools": TOOLS,
               "messages": [{"role": "user", "content": "fix the README"}], **change()}

    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(**request)

    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert message in raised.value.body["error"]["message"]
    [failure] = fake.failures
    assert message in failure


def test_four_breakpoints_are_accepted(fake, client):
    fake.add_script("fix the README", two_turn_script())
    request = five_breakpoints()
    del request["messages"][0]["content"][1]["cache_control"]

    assert client.messages.create(model=MODEL, max_tokens=1024, **request).stop_reason == "tool_use"
    assert fake.failures == []
