"""Every ```python block of the user docs runs as written (in order, one namespace per page)."""
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = ["docs/python_api.md", "README.md", "docs/properties.md", "docs/repair.md",
         "docs/graph_path.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page, monkeypatch):
    text = (REPO / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"{page} has no python example"
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page}[block {i}]", "exec"), namespace)
