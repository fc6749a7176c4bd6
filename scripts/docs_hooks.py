"""mkdocs hooks: the repository's own Markdown files (README.md, PROTOCOL.md, ...) become pages
of the site as they are, and their links are rewritten to the site's pages.

Each file keeps one home, where GitHub shows it; the site reads it from there instead of a copy.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

# Repository path -> the page it becomes on the site.
REPO_PAGES = {
    "README.md": "guide.md",
    "PROTOCOL.md": "protocol.md",
    "clients/node/README.md": "node-client.md",
}
_SOURCE_OF = {page: repo for repo, page in REPO_PAGES.items()}

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


def on_files(files: Files, config: Any) -> Files:
    for repo_path, page in REPO_PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / repo_path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    here = repo_path_of(page.file.src_uri)
    parts = _FENCE.split(markdown)
    fences = _FENCE.findall(markdown)
    out = [_LINK.sub(lambda m: _relink(m, here, page.file.src_uri), parts[0])]
    for fence, text in zip(fences, parts[1:], strict=True):
        out += [fence, _LINK.sub(lambda m: _relink(m, here, page.file.src_uri), text)]
    return "".join(out)


def repo_path_of(src_uri: str) -> str:
    """Where a page of the site lives in the repository."""
    return _SOURCE_OF.get(src_uri, f"docs/{src_uri}")


def _relink(match: re.Match[str], here: str, page_uri: str) -> str:
    text, target = match.groups()
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return match.group(0)
    path, sep, anchor = target.partition("#")
    repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
    site_target = REPO_PAGES.get(repo_target)
    if site_target is None and repo_target.startswith("docs/"):
        site_target = repo_target.removeprefix("docs/")
    if site_target is None:
        # Outside the site (a Dockerfile, a directory): name the file instead of linking.
        return text if repo_target in text else f"{text} (`{repo_target}` in the repository)"
    relative = posixpath.relpath(site_target, posixpath.dirname(page_uri) or ".")
    return f"[{text}]({relative}{sep}{anchor})"
