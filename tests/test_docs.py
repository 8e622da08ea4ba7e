"""What the README and the documentation promise: their examples run as shown, their links work
outside the repository, and the versions they claim are the ones the Makefile tests.

The examples are taken from the pages themselves (the README's ``python`` blocks, and the blocks
of the docs that carry a ``title=``), so a page cannot drift from the code it shows. The tests
whose names mention FastAPI also run against the oldest FastAPI claimed (``make test-min``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streaming_responses.testing import StreamingTestClient

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def readme_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def titled_block(page: str, title: str) -> str:
    text = (DOCS / page).read_text()
    match = re.search(rf'^```python title="{re.escape(title)}"\n(.*?)^```', text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no block titled {title} in docs/{page}"
    return match.group(1)


def run_example(code: str, name: str) -> Any:
    """Execute an example as a module would run; return its ``app``."""
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(code, name, "exec"), namespace)
    return namespace["app"]


async def test_the_readme_fastapi_examples_run_as_shown() -> None:
    first, _, fastapi_example = readme_blocks()
    assert 8 <= len(first.strip().splitlines()) <= 14, "the first example stays short"

    tokens = await StreamingTestClient(run_example(first, "readme_first")).get("/tokens", timeout=10)
    assert tokens.headers["content-type"] == "text/event-stream; charset=utf-8"
    words = re.findall(r"^data: (.*)$", tokens.text, re.MULTILINE)
    assert " ".join(words) == "a stream that fails never looks complete"

    client = StreamingTestClient(run_example(fastapi_example, "readme_fastapi"))
    assert (await client.get("/numbers")).text == "".join(f"{n}\n" for n in range(10))
    report = await client.get("/report.csv")
    assert report.headers["content-type"] == "text/csv; charset=utf-8"
    assert report.text == "id,name\n1,Ada\n"


async def test_the_readme_starlette_example_runs_as_shown() -> None:
    # Also run against the oldest starlette claimed (make test-min), where FastAPI is too old
    # for the generator endpoints of the other examples.
    starlette_example = readme_blocks()[1]
    async with StreamingTestClient(run_example(starlette_example, "readme_starlette")).stream(
        "GET", "/numbers"
    ) as response:
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        chunks = response.iter_bytes()
        assert [await chunks.__anext__(), await chunks.__anext__()] == [b"0\n", b"1\n"]
        await response.disconnect()


async def test_the_fastapi_page_examples_run_as_shown() -> None:
    generator = StreamingTestClient(run_example(titled_block("fastapi.md", "generator_endpoint.py"), "g"))
    events = await generator.get("/tokens")
    assert re.findall(r"^data: (.*)$", events.text, re.MULTILINE) == ["each", "word", "is", "one", "event"]

    head_app = run_example(titled_block("fastapi.md", "head_requests.py"), "head_requests")
    client = StreamingTestClient(head_app)
    head = await client.request("HEAD", "/export.csv")
    assert head.status_code == 200
    assert head.headers["content-type"] == "text/csv; charset=utf-8"
    assert head.body == b""
    assert (await client.get("/export.csv")).text == "id,name\r\n1,Ada\r\n"
    schema = (await client.get("/openapi.json")).json()
    assert list(schema["paths"]["/export.csv"]) == ["get"]

    media_app = run_example(titled_block("fastapi.md", "openapi_media_type.py"), "openapi_media_type")
    paths = (await StreamingTestClient(media_app).get("/openapi.json")).json()["paths"]
    assert list(paths["/report.csv"]["get"]["responses"]["200"]["content"]) == ["text/csv"]
    assert list(paths["/log"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


async def test_the_prometheus_example_counts_each_stream_by_route_and_outcome() -> None:
    import prometheus_client

    before = set(prometheus_client.REGISTRY._names_to_collectors.values())
    try:
        app = run_example(titled_block("observability.md", "prometheus_metrics.py"), "prometheus_metrics")
        client = StreamingTestClient(app)
        export = await client.get("/export")
        metrics = (await client.get("/metrics/")).text
    finally:
        for collector in set(prometheus_client.REGISTRY._names_to_collectors.values()) - before:
            prometheus_client.REGISTRY.unregister(collector)
    assert export.text.startswith("0,row 0\n")
    assert 'streamed_responses_total{outcome="complete",route="/export"} 1.0' in metrics
    assert f'streamed_response_bytes_total{{route="/export"}} {float(len(export.body))}' in metrics
    assert 'streamed_response_first_byte_seconds_count{route="/export"} 1.0' in metrics
    assert "streamed_response_clients_gone_total{" not in metrics


# -- links and the one documentation address ---------------------------------------------------


def docs_base() -> str:
    match = re.search(r"^site_url: (\S+)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert match is not None
    return match.group(1)


def readme_link_targets() -> Iterator[tuple[str, str]]:
    yield from re.findall(r"^\[([a-z-]+)\]: (\S+)$", README, re.MULTILINE)


def test_the_readme_has_no_link_that_breaks_outside_the_repository() -> None:
    inline = re.findall(r"\]\((?!https://|#)([^)]+)\)", README)
    assert inline == [], "relative links break on the package index: use a reference to the docs site"
    for label in re.findall(r"\]\[([a-z-]+)\]", README):
        assert label in dict(readme_link_targets()), label


def test_every_readme_link_names_a_page_and_heading_of_the_docs_under_the_one_address() -> None:
    base = docs_base()
    targets = dict(readme_link_targets())
    assert targets
    for label, url in targets.items():
        assert url.startswith(base), (label, url)
        page, _, anchor = url.removeprefix(base).partition("#")
        source = DOCS / (f"{page.strip('/')}.md" if page else "index.md")
        assert source.exists(), (label, url)
        if anchor:
            headings = re.findall(r"^#+ (.+)$", source.read_text(), re.MULTILINE)
            slugs = {re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") for heading in headings}
            assert anchor in slugs, (label, url)


def test_the_package_metadata_and_the_docs_site_use_the_same_documentation_address() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^Documentation = "([^"]+)"$', pyproject, re.MULTILINE)
    assert match is not None
    assert match.group(1) == docs_base()
    for url in re.findall(r'^\w+ = "(https://[^"]+)"$', pyproject, re.MULTILINE):
        assert url.startswith(docs_base()), url


def test_the_python_versions_claimed_are_exactly_those_make_test_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^TEST_PYTHONS := (.+)$", makefile, re.MULTILINE)
    assert match is not None
    main = re.search(r"^PYTHON \?= \$\(or \$\(call interpreter,(3\.\d+)\)", makefile, re.MULTILINE)
    assert main is not None
    tested = sorted({*match.group(1).split(), main.group(1)}, key=lambda v: tuple(map(int, v.split("."))))
    classifiers = re.findall(
        r'"Programming Language :: Python :: (3\.\d+)"', (ROOT / "pyproject.toml").read_text()
    )
    assert classifiers == tested
    assert f"| Python | {', '.join(tested[:-1])} or {tested[-1]} |" in README


def test_no_page_for_users_talks_about_the_issue_it_came_from() -> None:
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text()
        assert not re.search(r"\bthe issue\b", text, re.IGNORECASE), page.name


async def test_the_compression_page_example_runs_as_shown() -> None:
    from tests.decoders import decode  # needs the compression extra, absent from make test-min

    app = run_example(titled_block("compression.md", "compressed_routes.py"), "compressed_routes")
    client = StreamingTestClient(app)
    browser = {"accept-encoding": "gzip, deflate, br, zstd"}
    feed = await client.get("/feed", headers=browser)
    assert feed.headers["content-encoding"] == "zstd"
    assert re.findall(r"^data: (.*)$", decode("zstd", feed.body).decode(), re.MULTILINE) == [
        '{"n":0}',
        '{"n":1}',
        '{"n":2}',
    ]
    export = await client.get("/export.jsonl", headers={"accept-encoding": "br, gzip"})
    assert export.headers["content-encoding"] == "gzip"
    assert decode("gzip", export.body).count(b"\n") == 1000
    private = await client.get("/account/events", headers=browser)
    assert "content-encoding" not in private.headers
    assert b"data: your balance: 1,024.00" in private.body
