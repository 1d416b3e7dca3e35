"""The official OpenAI and Anthropic Python SDKs, used through the Paid proxy.

Run by tests/python_sdks.rs with PROXY_URL and PAID_TOKEN set. Each check uses
the SDK exactly as an agent would, with the run token as its API key, and
asserts that it gets the SDK's normal response objects. Prints one JSON line
with what it saw.
"""

import json
import os
import sys

import anthropic
import openai
from anthropic.types import Message
from openai.types.chat import ChatCompletion, ChatCompletionChunk

PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["PAID_TOKEN"]
EXPECTED = os.environ["EXPECTED_TEXT"]
seen = {}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


# --- OpenAI -----------------------------------------------------------------
oa = openai.OpenAI(base_url=f"{PROXY}/openai/v1", api_key=TOKEN, max_retries=0)

completion = oa.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
)
check(isinstance(completion, ChatCompletion), f"openai completion type {type(completion)}")
check(completion.choices[0].message.content == EXPECTED, f"openai text {completion.choices[0].message.content!r}")
check(completion.usage is not None and completion.usage.prompt_tokens > 0, "openai usage")
seen["openai_completion_usage"] = completion.usage.model_dump()

# Streaming without asking for usage: the proxy asks for it on the client's behalf.
chunks = list(
    oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
    )
)
check(all(isinstance(c, ChatCompletionChunk) for c in chunks), "openai chunk types")
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(text == EXPECTED, f"openai streamed text {text!r}")
check(len(chunks) >= 3, f"openai chunk count {len(chunks)}")
seen["openai_stream_chunks"] = len(chunks)

try:
    openai.OpenAI(base_url=f"{PROXY}/openai/v1", api_key="sk-not-a-run-token", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    check(False, "openai accepted a bad token")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "openai 401")
    seen["openai_bad_token"] = e.code

# --- Anthropic --------------------------------------------------------------
an = anthropic.Anthropic(base_url=f"{PROXY}/anthropic", api_key=TOKEN, max_retries=0)

message = an.messages.create(
    model="claude-haiku-4-5",
    max_tokens=128,
    messages=[{"role": "user", "content": "Say hello"}],
)
check(isinstance(message, Message), f"anthropic message type {type(message)}")
check(message.content[0].text == EXPECTED, f"anthropic text {message.content[0].text!r}")
check(message.usage.input_tokens > 0, "anthropic usage")
seen["anthropic_message_usage"] = message.usage.model_dump()

with an.messages.stream(
    model="claude-haiku-4-5",
    max_tokens=128,
    messages=[{"role": "user", "content": "Say hello"}],
) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
check(streamed == EXPECTED, f"anthropic streamed text {streamed!r}")
check(isinstance(final, Message) and final.stop_reason == "end_turn", "anthropic final message")
seen["anthropic_stream_usage"] = final.usage.model_dump()

try:
    anthropic.Anthropic(base_url=f"{PROXY}/anthropic", api_key="sk-ant-not-a-run-token", max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    check(False, "anthropic accepted a bad token")
except anthropic.AuthenticationError as e:
    check(e.status_code == 401, "anthropic 401")
    seen["anthropic_bad_token"] = e.body["error"]["type"] if isinstance(e.body, dict) and "error" in e.body else str(e.body)

seen["versions"] = {"openai": openai.__version__, "anthropic": anthropic.__version__}
print(json.dumps(seen))
