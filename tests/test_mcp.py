"""The app as a Model Context Protocol server, used through the official `mcp` client over HTTP as an
assistant would: the tools are listed by their API names with their inputs described, and the
classify tools give exactly the labels of /classify_*. Gradio refuses loopback URLs as file inputs
(an SSRF guard), so images go in as data: URLs."""

from __future__ import annotations

import ast
import asyncio
import base64
import mimetypes
import urllib.error
import urllib.request

import pytest

from greenlens.core.examples import example_files
from greenlens.core.tasks import TASKS

from .apprunner import running_app


def data_url(path) -> str:
    kind = mimetypes.guess_type(str(path))[0] or "image/jpeg"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


async def list_and_call(url: str, calls: list[tuple[str, dict]]):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        results = [await session.call_tool(name, arguments) for name, arguments in calls]
        return tools, results


def test_tools_classify_real_images_with_the_endpoints_labels(app_url, client):
    examples = {task: example_files(task) for task in ("leaf", "cactus")}
    if not all(examples.values()):
        pytest.skip("example images not copied in (make examples with the data folder present)")
    chosen = [(task, path, label) for task, files in examples.items() for path, label in files[:3]]
    calls = [(f"classify_{task}", {"path": data_url(path)}) for task, path, _ in chosen]
    tools, results = asyncio.run(list_and_call(app_url, [*calls, ("explain_leaf", {"path": data_url(chosen[0][1])})]))
    explained = results.pop()
    assert not explained.isError, explained
    assert [content.mimeType for content in explained.content if content.type == "image"] == ["image/webp"]
    assert {"classify_leaf", "classify_cactus", "explain_leaf", "explain_cactus", "survey"} <= set(tools)
    schema = tools["classify_cactus"].inputSchema["properties"]["path"]
    assert "data: URL" in schema["description"]
    assert "not an aerial tile" in tools["classify_cactus"].description
    # Each description reaches the client whole: what the tool returns, not only what it does.
    for name in ("classify_leaf", "classify_cactus", "explain_leaf", "batch_cactus", "survey", "survey_files"):
        assert "Returns:" in tools[name].description, (name, tools[name].description)
    assert '"confidences"' in tools["classify_leaf"].description
    assert "too blurred to judge" in tools["classify_leaf"].description
    assert "cactus_tiles_per_ha" in tools["survey"].description
    assert "GeoPackage" in tools["survey_files"].description
    from gradio_client import handle_file

    for (task, path, expected), result in zip(chosen, results):
        assert not result.isError, result
        answer = ast.literal_eval(result.content[0].text)
        assert answer["label"] == expected == client.predict(handle_file(str(path)), api_name=f"/classify_{task}")["label"]
        assert {c["label"] for c in answer["confidences"]} == set(TASKS[task].labels)


def test_an_environment_variable_turns_the_mcp_server_off():
    with running_app(env={"GRADIO_MCP_SERVER": "false"}) as (url, _):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "gradio_api/mcp/schema", timeout=10)
        assert refused.value.code == 404
