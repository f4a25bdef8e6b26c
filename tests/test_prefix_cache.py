"""The simulated backend's prefix cache: per replica, bounded, least recently used out first,
a prompt's tail before its head (as vLLM), reported as cached prompt tokens."""

from __future__ import annotations

import aiohttp

from proxy.sim import start_sim

BLOCK_CHARS = 16 * 4  # one 16-token block at 4 characters per token


async def _cached(url: str, text: str) -> tuple[int, int]:
    body = {"model": "MiniMax-M2", "messages": [{"role": "user", "content": text}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/v1/chat/completions", json=body) as resp,
    ):
        usage = (await resp.json())["usage"]
    return usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def _prompt(seed: str, blocks: int) -> str:
    return "".join(f"{seed}{n:06d}".ljust(BLOCK_CHARS, ".") for n in range(blocks))


async def test_a_bounded_cache_evicts_the_tail_of_old_prompts_first() -> None:
    first, second = _prompt("first", 40), _prompt("second", 40)
    async with await start_sim(cache_blocks=50) as sim:
        assert (await _cached(sim.url, first))[1] == 0
        assert (await _cached(sim.url, second))[1] == 0  # 80 blocks seen, 50 kept
        # The 30 evicted were the tail of the first prompt: its first 10 blocks still hit.
        prompt_tokens, cached = await _cached(sim.url, first)
        assert cached == 10 * 16 and prompt_tokens > 40 * 16
        # Longer than the whole cache: the prompt's own head survives its tail.
        sim.options.cache_blocks = 20
        assert (await _cached(sim.url, first))[1] == 40 * 16  # all of it, then 20 blocks kept
        assert (await _cached(sim.url, first))[1] == 20 * 16


async def test_each_replica_has_its_own_cache_and_zero_means_no_limit() -> None:
    text = _prompt("shared", 300)
    async with await start_sim(cache_blocks=0) as one, await start_sim(cache_blocks=0) as two:
        assert (await _cached(one.url, text))[1] == 0
        assert (await _cached(two.url, text))[1] == 0  # another replica has not seen it
        prompt_tokens, cached = await _cached(one.url, text + " and more")
        assert cached == 300 * 16 < prompt_tokens
