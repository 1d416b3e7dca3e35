"""Sends N concurrent Messages requests through the proxy with the official
anthropic SDK (no retries), and prints how many were served and how many
were refused for the budget, as JSON."""

import asyncio
import json
import os

import anthropic


async def main():
    client = anthropic.AsyncAnthropic(
        base_url=os.environ["PROXY_URL"] + "/anthropic",
        api_key=os.environ["PAID_TOKEN"],
        max_retries=0,
    )
    n = int(os.environ["REQUESTS"])
    max_tokens = int(os.environ["MAX_TOKENS"])

    async def one():
        try:
            # Streamed, as agents do (the SDK refuses a non-streamed request
            # that may run this long).
            async with client.messages.stream(
                model="claude-haiku-4-5",
                max_tokens=max_tokens,
                messages=[{"role": "user", "content": "Write a long essay."}],
            ) as stream:
                await stream.get_final_message()
            return "served"
        except anthropic.RateLimitError as e:
            return "refused: " + e.body["error"]["message"] if isinstance(e.body, dict) else "refused"

    results = await asyncio.gather(*(one() for _ in range(n)))
    print(json.dumps({
        "served": sum(r == "served" for r in results),
        "refused": sum(r.startswith("refused") for r in results),
        "messages": sorted({r for r in results if r != "served"}),
    }))


asyncio.run(main())
