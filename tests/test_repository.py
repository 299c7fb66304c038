"""The repository stands alone: what it cites is inside it.

- no file of src/, docs/, bench/, experiments/, tools/, tests/, README.md, BENCHMARKS.md, the Makefile or
  pyproject.toml names a file outside the repository (the method reference that used to live beside it, a
  sibling ``shared`` folder, an absolute path of one machine: /work, a home folder);
- every ``docs/FILE.md §n`` cited in the code (src/, bench/, experiments/, tools/, tests/), and every
  ``[FILE.md §n](FILE.md)`` cited in docs/, names a file of docs/ that has a heading numbered ``n``;
- every relative link of README.md, BENCHMARKS.md, docs/ and experiments/ points at a file of the repository;
- every repository path those files name (``bench/bench_swap.py``) exists (the records of bench/results/ aside);
- bench/, experiments/, tools/ and tests/ are packages whose modules import one another by name, never by path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What no shipped file may name: each pattern with the reason it is refused.
OUTSIDE = [
    (re.compile(r"LONGROPE\.md"), "the method reference lives in docs/method.md"),
    (re.compile(r"\.\./shared\b"), "a folder beside the repository"),
    (re.compile(r"(?<![\w.~-])/work/"), "an absolute path of one machine"),
    (re.compile(r"(?<![\w.~-])/(?:home|Users|root)/\w"), "a home folder of one machine"),
]
#: the folders whose files are checked, every file of each (the repository's own text)
FOLDERS = ("src", "docs", "bench", "experiments", "tools", "tests")
#: the folders of code that cites docs/
CODE_FOLDERS = ("src", "bench", "experiments", "tools", "tests")

_SECTION = r"§(\d+(?:\.\d+)*)"
#: ``docs/method.md §4``, ``docs/method.md §4–§6``, ``docs/method.md §2, §5, §8``.
_CODE_CITE = re.compile(r"docs/([\w-]+\.md) " + _SECTION + r"((?:\s*(?:,|–|-|and)\s*" + _SECTION + r")*)")
#: ``[method.md §5.2](method.md)`` inside docs/.
_DOCS_CITE = re.compile(r"\[([\w-]+\.md) " + _SECTION + r"\]\(([\w-]+\.md)(?:#[\w-]*)?\)")
_MORE = re.compile(_SECTION)
_HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def shipped_files() -> list[Path]:
    """The text files whose references must stay inside the repository (this file, whose examples name
    what is refused, left out)."""
    files = [ROOT / name for name in ("README.md", "BENCHMARKS.md", "Makefile", "pyproject.toml")]
    for folder in FOLDERS:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and _is_text(p))
    ignored = _ignored(files)
    # a run folder carried between sessions (experiments/*/runs/) is a machine's record of a run, not text that
    # cites: its config.json names the folder the run was started in, which a resume reads
    carried = {p for p in files if (rel := p.relative_to(ROOT).parts)[0] == "experiments" and rel[2:3] == ("runs",)}
    return [p for p in files if p != Path(__file__).resolve() and p not in ignored and p not in carried]


def _ignored(files: list[Path]) -> set[Path]:
    """The files git ignores (build outputs such as src/longrope.egg-info): not the repository's text.
    Outside a git checkout (an unpacked source tree) nothing is left out."""
    import subprocess

    try:
        out = subprocess.run(["git", "check-ignore", "--stdin"], cwd=ROOT, capture_output=True, text=True,
                             input="\n".join(str(p.relative_to(ROOT)) for p in files), timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {ROOT / line for line in out.stdout.splitlines() if line.strip()} if out.returncode in (0, 1) else set()


def _is_text(path: Path) -> bool:
    if "__pycache__" in path.parts:
        return False
    try:
        path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return False
    return True


def outside_references(text: str) -> list[str]:
    """The refused names found in ``text``, one entry per hit: ``"line N: NAME (why)"``."""
    hits = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, why in OUTSIDE:
            for match in pattern.finditer(line):
                hits.append(f"line {number}: {match.group(0)!r} ({why})")
    return hits


def code_citations(text: str) -> list[tuple[str, str]]:
    """``(file, section)`` for every ``docs/FILE.md §n`` in ``text`` (ranges and lists give each end/item)."""
    found = []
    for match in _CODE_CITE.finditer(text):
        found.append((match.group(1), match.group(2)))
        found += [(match.group(1), more) for more in _MORE.findall(match.group(3) or "")]
    return found


def docs_citations(text: str) -> list[tuple[str, str]]:
    """``(file, section)`` for every ``[FILE.md §n](FILE.md)`` link of a page of docs/."""
    found = []
    for match in _DOCS_CITE.finditer(text):
        if match.group(1) != match.group(3):
            raise AssertionError(f"the link text names {match.group(1)} but points at {match.group(3)}")
        found.append((match.group(1), match.group(2)))
    return found


def section_numbers(markdown: str) -> set[str]:
    """The numbers of the numbered headings of a markdown page (``## 5. …`` → 5, ``### 5.3 …`` → 5.3)."""
    return set(_HEADING.findall(markdown))


def missing_sections(citations: list[tuple[str, str]]) -> list[str]:
    """The citations whose file is not in docs/ or has no heading with that number."""
    missing = []
    for name, section in citations:
        page = ROOT / "docs" / name
        if not page.is_file():
            missing.append(f"docs/{name} (no such file)")
        elif section not in section_numbers(page.read_text(encoding="utf-8")):
            missing.append(f"docs/{name} §{section} (no heading numbered {section})")
    return missing


# --- the checks on the repository ----------------------------------------------------------------------


def test_no_file_names_a_path_outside_the_repository():
    problems = []
    for path in shipped_files():
        problems += [f"{path.relative_to(ROOT)} {hit}" for hit in outside_references(path.read_text("utf-8"))]
    assert not problems, "files point outside the repository:\n" + "\n".join(problems)


def test_every_cited_section_of_docs_exists():
    cited = []
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # this file's own examples cite missing sections on purpose
            cited += [(name, section, path) for name, section in code_citations(path.read_text("utf-8"))]
    for path in sorted((ROOT / "docs").glob("*.md")):
        cited += [(name, section, path) for name, section in docs_citations(path.read_text("utf-8"))]
    # The code cites the method reference in many places; the scanner must be finding them.
    assert sum(1 for name, _, p in cited if name == "method.md" and "src" in p.parts) >= 20
    problems = [
        f"{path.relative_to(ROOT)}: {miss}"
        for name, section, path in cited
        for miss in missing_sections([(name, section)])
    ]
    assert not problems, "citations of missing sections:\n" + "\n".join(problems)


def markdown_pages() -> list[str]:
    """The pages whose relative links are checked, relative to the repository root."""
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "experiments").rglob("*.md")]
    return sorted(str(p.relative_to(ROOT)) for p in pages)


def test_every_folder_checked_is_there():
    """A folder renamed away would leave its replacement unchecked."""
    assert [f for f in FOLDERS if not (ROOT / f).is_dir()] == []
    assert any(p.startswith("experiments/") for p in markdown_pages())


@pytest.mark.parametrize("page", markdown_pages())
def test_relative_links_point_at_files_of_the_repository(page):
    path = ROOT / page
    broken = []
    for target in _LINK.findall(path.read_text("utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor of the same page
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        if not resolved.exists() or ROOT not in resolved.parents:
            broken.append(target)
    assert not broken, f"{page} links to files that are not in the repository: {broken}"


#: a path of the repository named in its text (``bench/bench_swap.py``, ``docs/method.md``); a part in
#: capitals is a placeholder (``bench/results/NAME.json``), not a file
_REPO_PATH = re.compile(r"(?<![\w./~-])((?:src|docs|bench|tests|experiments|tools)/[\w./-]*\w\.(?:py|md|json|mjs|toml|yaml))")


def repository_paths(text: str) -> list[str]:
    """The repository paths named in ``text`` (placeholders left out)."""
    return [m for m in _REPO_PATH.findall(text) if not re.search(r"(?:^|/)[A-Z][A-Z_-]*(?:/|\.)", m)]


def test_every_file_of_the_repository_named_in_its_text_exists():
    """A moved or removed file leaves no stale name behind; the records of bench/results/ are history (they
    name the files as they were when they ran) and are not checked, and a name under bench/results/ is a
    record a script writes (it may not have run yet)."""
    missing = [f"{path.relative_to(ROOT)}: {name}" for path in shipped_files() if "results" not in path.parts
               for name in repository_paths(path.read_text("utf-8"))
               if not name.startswith("bench/results/") and not (ROOT / name).exists()]
    assert not missing, "names of files that do not exist:\n" + "\n".join(missing)


#: the packages beside src/: their modules import one another by module name, never by file path
PACKAGES = ("bench", "experiments", "tools", "tests")
#: what loading a file by its path looks like
BY_PATH = re.compile(r"spec_from_file_location|SourceFileLoader|\brunpy\b|sys\.path\.(?:insert|append)|syspath_prepend")


def test_tests_benchmarks_experiments_and_tools_are_packages():
    missing = sorted(str(d.relative_to(ROOT)) for folder in PACKAGES for d in [ROOT / folder, *(ROOT / folder).rglob("*")]
                     if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py"))
                     and not (d / "__init__.py").is_file())
    assert not missing, f"folders of Python files without __init__.py: {missing}"


def test_no_module_is_loaded_by_its_file_path():
    hits = [f"{path.relative_to(ROOT)}: {line.strip()}"
            for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))
            if path != Path(__file__).resolve()  # this file names what it refuses
            for line in path.read_text("utf-8").splitlines() if BY_PATH.search(line)]
    assert not hits, "modules loaded by path (import them as package modules):\n" + "\n".join(hits)


# --- the scanners themselves (a scanner that finds nothing would pass every check above) -----------------


def test_outside_references_are_found():
    text = ("ok line\nsee LONGROPE.md §4\nread ../shared/notes and /work/main/x\nrelative work/ is fine\n"
            "cd /home/me/longrope or /Users/me/x; data/home/x and ~/home/ are fine")
    hits = outside_references(text)
    assert len(hits) == 5
    assert hits[0].startswith("line 2:") and hits[2].startswith("line 3:") and hits[4].startswith("line 5:")


def test_repository_paths_are_found_and_placeholders_skipped():
    text = "see `bench/bench_swap.py`, tests/runs/conftest.py and docs/method.md; bench/results/NAME.json, docs/FILE.md"
    assert repository_paths(text) == ["bench/bench_swap.py", "tests/runs/conftest.py", "docs/method.md"]
    assert repository_paths("src/longrope/x.py and mysrc/a.py, ./bench/b.py") == ["src/longrope/x.py"]


def test_code_citations_parse_lists_and_ranges():
    text = "(docs/method.md §4–§6) and (docs/method.md §2, §5.3, §8): docs/serving.md §1"
    assert code_citations(text) == [
        ("method.md", "4"),
        ("method.md", "6"),
        ("method.md", "2"),
        ("method.md", "5.3"),
        ("method.md", "8"),
        ("serving.md", "1"),
    ]
    assert docs_citations("as in ([method.md §5.2](method.md)).") == [("method.md", "5.2")]


def test_missing_sections_are_reported():
    assert section_numbers("# Title\n## 1. One\ntext\n### 1.2 Sub\n## Appendix\n") == {"1", "1.2"}
    assert missing_sections([("method.md", "2")]) == []
    assert missing_sections([("method.md", "99")]) == ["docs/method.md §99 (no heading numbered 99)"]
    assert missing_sections([("no-such-page.md", "1")]) == ["docs/no-such-page.md (no such file)"]
