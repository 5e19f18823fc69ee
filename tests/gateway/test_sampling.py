"""A client's sampling options reach the model provider; bad ones are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gateway_server import in_process
from tests.support.mock_openai import MockOpenAI, Reply

pytestmark = pytest.mark.anyio


def config(mock: MockOpenAI) -> dict:
    return {
        "agents": [{"id": "main", "default": True, "model": "openai/mock-model"}],
        "plugins": {"entries": {"openai": {"enabled": True, "config": {
            "base_url": mock.url, "api_key_env": "CLAWGATE_TEST_NO_KEY", "max_retries": 0}}}},
    }


async def test_chat_completion_sampling_reaches_the_provider(
        tmp_path: Path, mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply("sampled"), Reply("limited"))
    async with in_process(tmp_path, config(mock_openai)) as server, server.client() as http:
        reply = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 64,
            "seed": 7, "stop": "END", "presence_penalty": 0.5,
            "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "sampled"
        sent = mock_openai.requests[-1].body
        assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.2, 0.9, 64)
        assert (sent["seed"], sent["stop"], sent["presence_penalty"]) == (7, ["END"], 0.5)

        response = await http.post("/v1/responses", json={
            "model": "clawgate", "input": "hi", "temperature": 1.5, "max_output_tokens": 16})
        assert response.status_code == 200, response.text
        sent = mock_openai.requests[-1].body
        assert (sent["temperature"], sent["max_tokens"]) == (1.5, 16)
        assert "seed" not in sent and "stop" not in sent


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", 3), ("top_p", -0.1), ("seed", "seven"), ("stop", ["a", "b", "c", "d", "e"]),
    ("max_tokens", 0),
])
async def test_bad_sampling_option_is_refused_by_name(
        tmp_path: Path, mock_openai: MockOpenAI, field: str, value: object) -> None:
    async with in_process(tmp_path, config(mock_openai)) as server, server.client() as http:
        reply = await http.post("/v1/chat/completions", json={
            "model": "clawgate", field: value, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 400
        assert f"`{field}`" in reply.json()["error"]["message"]
        assert mock_openai.requests == []  # refused before anything reached the provider
