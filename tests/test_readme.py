"""The README runs as written: every shell and Python block, in order, as a newcomer types
them after `make run`, against the stack `make run` starts (the Makefile's recipe, on
its usual ports, in a temporary directory laid out like the repository with a data
directory of its own), which is stopped with SIGTERM at the end.

What the README marks (an HTML comment on the line before a block or table):

    <!-- readme-test: skip (reason) -->   not run, for the reason given
    <!-- readme-test: banner (...) -->    what `make run` prints: each line must be printed,
                                          in order (`…` stands for anything)
    <!-- readme-test: filters (...) -->   list filters, one a line: each runs through
                                          `temporal workflow list --query`
    <!-- readme-test: table (...) -->     the search-attribute table: each example runs, and
                                          the demo cases it finds are the column's

A `text` block is prose (the layout); a `sh` or `python` block without a marker is run;
any other block without a marker fails the test.

Shown output: comment lines that start with `#` and two spaces (`#  Error: …`) right after a
command, or at the end of a Python block, are what it prints (`…` stands for anything). A
command shown printing `Error` or `refused` must fail and print it; every other command
must exit 0, print what is shown and no `Error` or `Traceback`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PORTS = (7233, 8233, 8081, 8311)  # the stack's Temporal, UI, codec server and gateway ports
RUN = {"sh", "python"}
KINDS = {"skip", "banner", "filters", "table"}
# what the README's own commands write in the directory they run in
WRITTEN = {".data", "audit", "s01.html", "s01.csv", "s01.json", "disclosure.html"}

_MARKER = re.compile(r"^<!-- readme-test: (\w+)(?: \((.+)\))? -->$")
_FENCE = re.compile(r"^```(\S*)$")
_DEMO = re.compile(r"^case-mini_program-DEMO-(\d{3})$")


@dataclass
class Command:
    line: int  # in README.md
    text: str
    shown: list[str] = field(default_factory=list)  # the output the README shows


@dataclass
class Item:
    """A fenced block, or a marked table, of the README."""

    line: int  # of the fence or the table's first row
    lang: str  # the block's language; "table" for a table
    body: list[str]
    kind: str | None = None  # the marker's
    reason: str | None = None


def readme_items(markdown: str) -> list[Item]:
    items: list[Item] = []
    lines = markdown.splitlines()
    marker: tuple[str, str | None] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _MARKER.match(line)
        fence = _FENCE.match(line)
        if found:
            marker = (found[1], found[2])
        elif fence:
            end = lines.index("```", i + 1)
            stray = [n for n in range(i + 1, end) if lines[n].startswith("```")]
            assert not stray, f"README.md:{stray[0] + 1}: a fence with text after it"
            items.append(Item(i + 2, fence[1], lines[i + 1 : end], *(marker or (None, None))))
            marker, i = None, end
        elif line.startswith("|") and marker is not None:
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            items.append(Item(i + 1, "table", lines[i:end], *marker))
            marker, i = None, end - 1
        elif line.strip() and marker is not None:
            raise AssertionError(
                f"README.md:{i + 1}: a readme-test marker before neither block nor table"
            )
        i += 1
    return items


def _scan(line: str, quote: str | None) -> tuple[str | None, bool, str | None]:
    """One shell line: the quote still open at its end, whether it continues on the next
    line (a trailing backslash), and the word ending a here-document it opens."""
    heredoc = None
    escaped = False
    for j, char in enumerate(line):
        if escaped:
            escaped = False
        elif quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif quote == '"':
            quote = None if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (j == 0 or line[j - 1].isspace()):
            return None, False, heredoc
        elif line.startswith("<<", j) and (opens := re.match(r"<<-?\s*'?(\w+)'?", line[j:])):
            heredoc = opens[1]
    return quote, escaped, heredoc


def shell_commands(body: list[str], first_line: int) -> list[Command]:
    """The commands of a shell block, each with the output shown after it."""
    commands: list[Command] = []
    current: list[str] = []
    quote: str | None = None
    heredoc: str | None = None
    for number, line in enumerate(body, start=first_line):
        if heredoc is not None:
            current.append(line)
            if line.strip() == heredoc:
                heredoc = None
                commands[-1].text = "\n".join(current)
                current = []
            continue
        if not current:
            if line.startswith("#  ") and commands:
                commands[-1].shown.append(line[3:])
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            commands.append(Command(number, ""))
        current.append(line)
        quote, continued, heredoc = _scan(line, quote)
        commands[-1].text = "\n".join(current)
        if quote is None and not continued and heredoc is None:
            current = []
    assert not current, f"README.md:{first_line}: a shell block ends inside a command"
    return commands


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _pattern(shown: str) -> re.Pattern[str]:
    """What the README shows, `…` standing for anything, whitespace for any whitespace."""
    return re.compile(".*?".join(re.escape(_squeeze(part)) for part in shown.split("…")))


def check_output(what: str, rc: int, output: str, shown: list[str]) -> list[str]:
    """The failures of a command that exited with rc and printed output."""
    text = " ".join(shown)
    failing = re.match(r"(Error|refused)\b", text) is not None
    problems = []
    if failing and rc == 0:
        problems.append(f"{what}: shown failing, but exited 0")
    if not failing and rc != 0:
        problems.append(f"{what}: exited {rc}")
    if text and not _pattern(text).search(_squeeze(output)):
        problems.append(f"{what}: does not print what the README shows: {text}")
    if not failing and ("Error" in output or "Traceback" in output):
        problems.append(f"{what}: printed an error")
    return [f"{p}\n{output.strip()[-1500:]}" for p in problems]


def demo_numbers(cell: str) -> set[str]:
    """The demo cases a table cell names: `none`, or numbers and ranges (`001–005, 007`),
    before any remark in parentheses or after a semicolon."""
    head = re.split(r"[(;]", cell)[0].strip()
    if head == "none":
        return set()
    numbers: set[str] = set()
    for part in head.split(","):
        bounds = re.fullmatch(r"(\d{3})(?:–(\d{3}))?", part.strip())
        assert bounds, f"not demo case numbers: {cell!r}"
        low, high = int(bounds[1]), int(bounds[2] or bounds[1])
        numbers |= {f"{n:03d}" for n in range(low, high + 1)}
    return numbers


# ---------------------------------------------------------------------------- the README


def test_every_block_is_run_or_marked_with_a_reason() -> None:
    items = readme_items(README.read_text(encoding="utf-8"))
    problems = []
    for item in items:
        where = f"README.md:{item.line} ({item.lang or 'no language'})"
        if item.kind is not None and item.kind not in KINDS:
            problems.append(f"{where}: unknown readme-test marker {item.kind!r}")
        elif item.kind == "skip" and not item.reason:
            problems.append(f"{where}: skipped without a reason")
        elif item.kind is None and item.lang not in RUN | {"text"}:
            problems.append(f"{where}: neither run nor marked (readme-test: skip (why))")
        elif item.kind is None and item.lang == "sh":
            shell_commands(item.body, item.line + 1)  # it parses
    assert not problems, "\n".join(problems)
    assert {item.kind for item in items} >= {"skip", "banner", "filters", "table"}


def test_markers_and_shown_output_are_read_as_the_docstring_says() -> None:
    sample = """<!-- readme-test: skip (needs a browser) -->
```sh
make shots
```

```sh
T=.venv/bin/temporal   # a remark, not output
$T workflow start --input '{"a": 1,
    "b": "# not a comment"}' \\
  --id x
$T workflow update --name claim
#  Error: unable to update workflow: claim: …
#  (type: CommandRefused)
python - <<'EOF'
print("#  not shown output")
EOF
```

```
no language
```
"""
    items = readme_items(sample)
    assert [(i.lang, i.kind, i.reason) for i in items] == [
        ("sh", "skip", "needs a browser"),
        ("sh", None, None),
        ("", None, None),
    ]
    commands = shell_commands(items[1].body, items[1].line + 1)
    assert [c.text.split()[0] for c in commands] == ["T=.venv/bin/temporal", "$T", "$T", "python"]
    assert commands[1].text.endswith("--id x") and commands[3].text.endswith("EOF")
    assert commands[2].shown == [
        "Error: unable to update workflow: claim: …",
        "(type: CommandRefused)",
    ]
    refused = (
        "Error: unable to update workflow: claim: actor gw-li may not\n  (type: CommandRefused)"
    )
    assert check_output("claim", 1, refused, commands[2].shown) == []
    assert check_output("claim", 0, refused, commands[2].shown)  # it had to fail
    assert check_output("start", 0, "Error: no such case", [])  # it printed an error
    assert check_output("start", 2, "", [])
    assert demo_numbers("001–003, 007 (and more)") == {"001", "002", "003", "007"}
    assert demo_numbers("none; finds others") == set()


# ------------------------------------------------------------------- against the stack


@dataclass
class Stack:
    cwd: Path
    env: dict[str, str]
    banner: str


class Shell:
    """One bash, as the newcomer's terminal: variables and exports carry from command to
    command; each command's output and exit status are kept apart."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stopped with what it runs
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.count = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def run(self, command: str, timeout: float = 90) -> tuple[int, str] | None:
        """Its exit status and output; None when it still runs after `timeout` seconds
        (the shell is then of no further use)."""
        assert self.proc.stdin is not None
        syntax = subprocess.run(
            ["bash", "-n"], input=command, capture_output=True, text=True, env=self.env
        )
        if syntax.returncode != 0:  # it would leave the shell waiting for the rest
            return syntax.returncode, syntax.stderr
        self.count += 1
        out = self.cwd / f".readme-out-{self.count}"
        done = f"__readme_done_{self.count}"
        self.proc.stdin.write(f'{{ {command}\n}} </dev/null >{out} 2>&1\necho "{done} $?"\n')
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line.startswith(done):
                return int(line.split()[1]), out.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a command still runs
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _ports_free(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for port in PORTS:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(port)
        if not busy or time.monotonic() > deadline:
            return not busy
        time.sleep(2)


def _default_sigint() -> None:
    """A terminal's `make run`: Ctrl-C works (a job started with & would ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_run() -> list[str]:
    """What `make run` runs (the Makefile's `run` recipe, `$(PY) -m <module>`)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n\t\$\(PY\) -m (\S+)$", makefile, re.MULTILINE)
    assert recipe, "the Makefile's run target is not `$(PY) -m <module>`"
    return [".venv/bin/python", "-m", recipe[1]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert _ports_free(60), (
        f"ports {PORTS} are in use: the README test starts the stack where `make run` "
        "serves; stop `make run` (or the other stack) and run the test again"
    )
    cwd = tmp_path_factory.mktemp("readme")
    for entry in ROOT.iterdir():  # the repository as the newcomer has it, minus their data
        if entry.name not in WRITTEN and entry.name != ".git":
            (cwd / entry.name).symlink_to(entry)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEMPORAL_", "CASE_", "LOG_", "PYTEST_"))
        and k not in ("DATABASE_URL", "TEST_DATABASE_URL")
    }
    env["CASELOOP_DATA"] = str(cwd / ".data")
    log = cwd / ".readme-stack.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(cwd / arg) if arg.startswith(".venv") else arg for arg in make_run()],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_sigint,
        )
    try:
        deadline = time.monotonic() + 180
        while "  Stop:" not in log.read_text(encoding="utf-8"):
            assert proc.poll() is None, f"the stack stopped:\n{log.read_text(encoding='utf-8')}"
            assert time.monotonic() < deadline, f"no banner:\n{log.read_text(encoding='utf-8')}"
            time.sleep(0.5)
        time.sleep(0.5)  # the banner's last lines
        yield Stack(cwd, env, log.read_text(encoding="utf-8"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text(encoding="utf-8")


def _workflow_ids(stack: Stack, query: str) -> tuple[list[str], str]:
    listed = subprocess.run(
        [str(stack.cwd / ".venv/bin/temporal"), "workflow", "list", "--query", query, "-o", "json"],
        cwd=stack.cwd,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listed.returncode != 0:
        return [], f"exited {listed.returncode}: {listed.stderr.strip()}"
    return [w["execution"]["workflowId"] for w in json.loads(listed.stdout or "[]")], ""


def check_banner(item: Item, printed: str) -> list[str]:
    lines = [_squeeze(line) for line in printed.splitlines()]
    at = 0
    for shown in filter(str.strip, item.body):
        pattern = _pattern(shown)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return [f"README.md:{item.line}: make run does not print {shown.strip()!r}\n{printed}"]
        at += 1
    return []


def check_filters(item: Item, stack: Stack) -> list[str]:
    problems = []
    for query in filter(str.strip, item.body):
        _, error = _workflow_ids(stack, query)
        if error:
            problems.append(f"README.md:{item.line}: {query}: {error}")
    return problems


def check_table(item: Item, stack: Stack) -> list[str]:
    problems = []
    for number, row in enumerate(item.body[2:], start=item.line + 2):
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        queries = re.findall(r"`([^`]+)`", cells[-2])
        answers = cells[-1].split(" / ")
        if len(queries) != len(answers):
            problems.append(f"README.md:{number}: {len(queries)} examples, {len(answers)} answers")
            continue
        for query, answer in zip(queries, answers, strict=True):
            ids, error = _workflow_ids(stack, query)
            found = {m[1] for i in ids if (m := _DEMO.match(i))}
            if error or found != demo_numbers(answer):
                problems.append(
                    f"README.md:{number}: {query}: {error or 'finds ' + str(sorted(found))}, "
                    f"the README says {answer}"
                )
    return problems


def _commands(item: Item, cwd: Path) -> list[Command]:
    """What the newcomer types for a block: its shell commands, or a Python block saved
    as a file and run."""
    if item.lang == "sh":
        return shell_commands(item.body, item.line + 1)
    script = cwd / f"readme-{item.line}.py"
    script.write_text("\n".join(item.body) + "\n", encoding="utf-8")
    shown = [line[3:] for line in item.body if line.startswith("#  ")]
    return [Command(item.line, f".venv/bin/python {script.name}", shown)]


@pytest.mark.timeout(300)
def test_readme_runs_as_written(stack: Stack) -> None:
    shell = Shell(stack.cwd, stack.env)
    problems: list[str] = []
    try:
        for item in readme_items(README.read_text(encoding="utf-8")):
            if item.kind == "banner":
                problems += check_banner(item, stack.banner)
            elif item.kind == "filters":
                problems += check_filters(item, stack)
            elif item.kind == "table":
                problems += check_table(item, stack)
            elif item.kind is None and item.lang in RUN:
                for command in _commands(item, stack.cwd):
                    where = f"README.md:{command.line}: {command.text.splitlines()[0]}"
                    result = shell.run(command.text)
                    if result is None:
                        raise AssertionError(
                            "\n\n".join([*problems, f"{where}: still running after 90 s"])
                        )
                    problems += check_output(where, *result, command.shown)
    finally:
        shell.close()
    assert not problems, "\n\n".join(problems)
