"""`kling-tui mcp`, driven by the MCP SDK's own client over stdio against the sandbox: the
assistant's tasks land in the shared history, references resolve to saved images, and no
answer or log line carries a credential."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from cli_helpers import SECRETS
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from kling_tui.history.store import HistoryStore
from kling_tui.sandbox import DEFAULT_API_KEY

TOOLS = {"list_models", "generate", "get_task", "wait_for_task", "search_history", "get_images"}


def _server(sandbox, errlog, *, api_key: str | None = DEFAULT_API_KEY):
    env = {**os.environ, "KLING_BASE_URL": sandbox.base_url}
    env.pop("KLING_API_KEY", None)
    if api_key is not None:
        env["KLING_API_KEY"] = api_key
    params = StdioServerParameters(command=sys.executable, args=["-m", "kling_tui", "mcp"], env=env)
    return Client(stdio_client(params, errlog=errlog), read_timeout_seconds=60)


def _text(result) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def test_an_assistant_generates_waits_reuses_an_image_and_finds_the_task(sandbox, tmp_path):
    answers: list[str] = []
    with (tmp_path / "server.log").open("w+") as errlog:
        async with _server(sandbox, errlog) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert tools >= TOOLS

            models = (await client.call_tool("list_models", {})).structured_content
            answers.append(json.dumps(models))
            v1 = next(m for m in models["models"] if m["name"] == "kling-v1")
            assert v1["units_per_image"] > 0 and "16:9" in v1["aspect_ratios"]
            assert "multi" in models["endpoints"]

            made = await client.call_tool(
                "generate", {"prompt": "a copper teapot on a shelf", "n": 2, "aspect_ratio": "1:1", "wait": True}
            )
            assert not made.is_error, _text(made)
            task = made.structured_content
            answers.append(json.dumps(task))
            assert task["status"] == "succeed" and len(task["images"]) == 2
            assert all(Path(p).exists() for p in task["images"])
            assert task["task_id"] in sandbox.state.tasks

            # An image of that task as the subject of a multi-image task, by reference.
            multi = await client.call_tool(
                "generate",
                {
                    "kind": "multi",
                    "prompt": "the teapot in a garden",
                    "model_name": "kling-v2",
                    "fields": {"subject_images": [f"{task['local_id']}:2"]},
                },
            )
            assert not multi.is_error, _text(multi)
            second = multi.structured_content
            assert second["params"]["subject_images"] == [task["images"][1]]
            assert second["parents"] == [{"local_id": task["local_id"], "image": 2}]  # lineage, as the CLI records it
            waited = (await client.call_tool("wait_for_task", {"task_id": second["task_id"]})).structured_content
            assert waited["status"] == "succeed" and waited["images"]
            sent = sandbox.state.task(second["task_id"]).payload["subject_image_list"][0]["subject_image"]
            assert base64.b64decode(sent) == Path(task["images"][1]).read_bytes()

            found = (await client.call_tool("search_history", {"words": "teapot copper"})).structured_content
            assert found["total"] == 1 and found["tasks"][0]["local_id"] == task["local_id"]

            images = await client.call_tool("get_images", {"task_id": task["task_id"], "include_content": True})
            kinds = [block.type for block in images.content]
            assert kinds == ["text", "image", "image"]
            assert base64.b64decode(images.content[1].data) == Path(task["images"][0]).read_bytes()
            answers.append(_text(images))

            bad = await client.call_tool("generate", {"prompt": "too many", "n": 42})
            assert bad.is_error and "n: must be from 1 to 9" in _text(bad)
            answers.append(_text(bad))
        errlog.seek(0)
        answers.append(errlog.read())

    with HistoryStore() as store:  # the history the TUI reads
        record = store.find_by_task_id(task["task_id"])
        assert record is not None and record.status == "succeed" and len(record.image_paths) == 2
    assert sandbox.state.counters()["tasks_created"] == 2  # the invalid one was never sent
    for secret in SECRETS:
        assert all(secret not in answer for answer in answers)


async def test_without_credentials_the_tools_say_how_to_set_them(sandbox, tmp_path):
    with (tmp_path / "server.log").open("w") as errlog:
        async with _server(sandbox, errlog, api_key=None) as client:
            result = await client.call_tool("generate", {"prompt": "a cat"})
            assert result.is_error and "no Kling credentials" in _text(result)
            listed = await client.call_tool("search_history", {})
            assert not listed.is_error and listed.structured_content["total"] == 0
    assert sandbox.state.counters()["tasks_created"] == 0


async def test_a_generate_that_would_pass_the_budget_is_refused_and_not_sent(sandbox, tmp_path, isolated_home):
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[budget]\nsession = 1\n", encoding="utf-8")
    config.chmod(0o600)
    with (tmp_path / "server.log").open("w") as errlog:
        async with _server(sandbox, errlog) as client:
            result = await client.call_tool("generate", {"prompt": "two cats", "n": 2, "model_name": "kling-v1"})
            assert result.is_error and "the session budget is 1 units" in _text(result)
    assert sandbox.state.counters()["tasks_created"] == 0
