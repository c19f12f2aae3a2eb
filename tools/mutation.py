"""Mutation testing for one module at a time, judged by that module's own tests.

    python tools/mutation.py wxmp/token.py            # one module
    python tools/mutation.py                          # every module in tools/mutation.toml
    python tools/mutation.py wxmp/crypto.py --jobs 1 --fail-under 90

Each module runs in a throw-away copy of the repository: mutmut (``pip install -e '.[mutation]'``)
writes its mutants there, so the checkout is never modified. The test files come from the
``[modules]`` table of tools/mutation.toml; the ``[[equivalent]]`` entries of the same file name the
mutants that cannot change behaviour, and the score counts only the others:

    score = killed / (mutants - equivalent)

A timeout counts as killed (the tests noticed a hang). "no tests" means no test of the module ever
ran the mutated function: it counts against the score like a survivor. For every survivor the
changed line is printed (``--diff``: the whole diff; ``--suggest``: the ``[[equivalent]]`` block to
paste when the mutant truly cannot change behaviour).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tools" / "mutation.toml"
# Copied next to the package so that tests reading them keep working inside mutmut's copy.
ALSO_COPY = ["templates", "examples", "tools"]
KILLED = {"killed", "killed (full run)", "timeout", "segfault", "caught by type check"}


@dataclass(frozen=True)
class Equivalent:
    module: str
    function: str
    before: str
    after: str
    reason: str
    #: when the same line and change occur several times in the function: which one (1-based)
    nth: int | None = None


@dataclass
class Config:
    modules: dict[str, list[str]]
    equivalents: list[Equivalent]


@dataclass
class Mutant:
    name: str
    function: str
    status: str
    before: str
    after: str
    diff: str


@dataclass
class ModuleResult:
    module: str
    mutants: list[Mutant] = field(default_factory=list)
    equivalent: list[Mutant] = field(default_factory=list)

    @property
    def judged(self) -> list[Mutant]:
        return [m for m in self.mutants if m not in self.equivalent]

    @property
    def killed(self) -> list[Mutant]:
        return [m for m in self.judged if m.status in KILLED]

    @property
    def survivors(self) -> list[Mutant]:
        return [m for m in self.judged if m.status not in KILLED]

    @property
    def score(self) -> float:
        return 100.0 * len(self.killed) / len(self.judged) if self.judged else 100.0


def load_config(path: Path = CONFIG) -> Config:
    """Parse tools/mutation.toml; raise ValueError naming the first bad entry."""
    data = tomllib.loads(path.read_text("utf-8"))
    modules = data.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise ValueError(f"{path}: [modules] must map each module to its test files")
    for module, tests in modules.items():
        if not module.endswith(".py") or not isinstance(tests, list) or not tests:
            raise ValueError(f"{path}: [modules] {module!r} needs a non-empty list of test files")
    equivalents = []
    for i, entry in enumerate(data.get("equivalent", [])):
        missing = {"module", "function", "before", "after", "reason"} - set(entry)
        if missing:
            raise ValueError(f"{path}: equivalent #{i + 1} lacks {sorted(missing)}")
        if entry["module"] not in modules:
            raise ValueError(f"{path}: equivalent #{i + 1} names {entry['module']!r}, not in [modules]")
        if not entry["reason"].strip() or "\n" in entry["reason"]:
            raise ValueError(f"{path}: equivalent #{i + 1} needs a one-line reason")
        nth = entry.get("nth")
        if nth is not None and (not isinstance(nth, int) or nth < 1):
            raise ValueError(f"{path}: equivalent #{i + 1}: nth must be a positive integer")
        fields = {k: entry[k] for k in ("module", "function", "before", "after", "reason")}
        equivalents.append(Equivalent(**fields, nth=nth))
    return Config(modules=modules, equivalents=equivalents)


def repo_files(root: Path) -> list[str]:
    """The files of the checkout: tracked plus untracked-but-not-ignored (so local edits count)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {
            ".git",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            ".mypy_cache",
            ".ruff_cache",
            "mutants",
        }
        return [
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(root).parts)
        ]
    return [f for f in out.decode().split("\0") if f]


def make_copy(dest: Path, module: str, tests: list[str]) -> None:
    for name in repo_files(ROOT):
        src = ROOT / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    # mutmut reads [tool.mutmut] from pyproject.toml, else [mutmut] from setup.cfg; the project keeps
    # neither, so the per-module settings are written here, in the copy only.
    lines = ["[mutmut]", "source_paths = wxmp", f"only_mutate = {module}"]
    lines += ["pytest_add_cli_args_test_selection =", *(f"    {t}" for t in tests)]
    lines += ["also_copy =", *(f"    {p}" for p in ALSO_COPY)]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider"]
    # The run is judged by test outcomes; git-based change detection across runs is not needed.
    lines += ["use_git_change_detection = false"]
    (dest / "setup.cfg").write_text("\n".join(lines) + "\n", "utf-8")


def changed_lines(diff: str) -> tuple[str, str]:
    before = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    after = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " ⏎ ".join(before), " ⏎ ".join(after)


def collect(work: Path, module: str) -> list[Mutant]:
    """Read mutmut's verdicts and each mutant's diff from the finished copy."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    old = Path.cwd()
    os.chdir(work)
    try:
        reset_config()
        data = SourceFileMutationData(path=module)
        data.load()
        mutants = []
        for name, code in sorted(data.exit_code_by_key.items(), key=lambda kv: natural_key(kv[0])):
            func, cls = orig_function_and_class_names_from_key(name)
            diff = get_diff_for_mutant(name, path=module)
            before, after = changed_lines(diff)
            function = f"{cls}.{func}" if cls else func
            mutants.append(Mutant(name, function, status_by_exit_code[code], before, after, diff))
        return mutants
    finally:
        os.chdir(old)
        reset_config()


def natural_key(name: str) -> tuple[str, int]:
    head, _, num = name.rpartition("__mutmut_")
    return head, int(num) if num.isdigit() else 0


def run_module(module: str, tests: list[str], jobs: int, keep: bool) -> tuple[list[Mutant], Path]:
    work = Path(tempfile.mkdtemp(prefix="wxmp-mutation-"))
    make_copy(work, module, tests)
    env = dict(os.environ)
    # Subprocesses started by the tests (python -c, fork + exec) must import the mutated package
    # too: mutmut only fixes sys.path of its own process.
    # The folder must exist before mutmut starts: Python caches "no such directory" for a sys.path
    # entry, and the tests would then import the installed package instead of the mutants.
    env["PYTHONPATH"] = str(work / "mutants")
    (work / "mutants").mkdir()
    env.pop("MUTANT_UNDER_TEST", None)
    log = work / "mutmut.log"
    print(f"== {module}: mutmut in {work} (tests: {' '.join(tests)})", flush=True)
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = log.read_text("utf-8", "replace")[-3000:]
        raise SystemExit(f"mutmut failed on {module} (exit {proc.returncode}); log {log}:\n{tail}")
    mutants = collect(work, module)
    rerun_untested(work, tests, env, mutants)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return mutants, work


def rerun_untested(work: Path, tests: list[str], env: dict[str, str], mutants: list[Mutant]) -> None:
    """Run every "no tests" mutant against all of the module's tests.

    mutmut picks the tests for a mutant by recording, in its own process, which tests call the
    function. Code that only runs in a child process (an ``os.register_at_fork`` hook, a
    ``python -c`` subprocess) is never recorded, though a test may well check it there.
    """
    untested = [m for m in mutants if m.status == "no tests"]
    if untested:
        print(
            f"   re-running {len(untested)} 'no tests' mutant(s) against all of {' '.join(tests)}", flush=True
        )
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    for m in untested:
        try:
            proc = subprocess.run(
                [*argv, *tests],
                cwd=work / "mutants",
                env={**env, "MUTANT_UNDER_TEST": m.name},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            m.status = "timeout"
            continue
        if proc.returncode == 5:
            continue  # nothing collected: stays "no tests"
        m.status = "killed (full run)" if proc.returncode else "survived (full run)"


def match_equivalents(result: ModuleResult, equivalents: list[Equivalent]) -> list[Equivalent]:
    """Mark the mutants the equivalents file names; return the entries that matched nothing."""
    stale = []
    for eq in equivalents:
        hits = [
            m for m in result.mutants if (m.function, m.before, m.after) == (eq.function, eq.before, eq.after)
        ]
        if eq.nth is not None:
            hits = hits[eq.nth - 1 : eq.nth]
        if not hits:
            stale.append(eq)
        result.equivalent.extend(h for h in hits if h not in result.equivalent)
    return stale


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def report(result: ModuleResult, stale: list[Equivalent], diff: bool, suggest: bool) -> None:
    for m in result.survivors:
        print(f"-- {m.status}: {m.name}  ({m.function})")
        print(m.diff if diff else f"   - {m.before}\n   + {m.after}")
        if suggest:
            print("   [[equivalent]]")
            print(f"   module = {toml_str(result.module)}")
            print(f"   function = {toml_str(m.function)}")
            print(f"   before = {toml_str(m.before)}")
            print(f"   after = {toml_str(m.after)}")
            twins = [
                t
                for t in result.mutants
                if (t.function, t.before, t.after) == (m.function, m.before, m.after)
            ]
            if len(twins) > 1:
                print(f"   nth = {twins.index(m) + 1}")
            print('   reason = "..."')
    for eq in stale:
        print(f"!! stale equivalent in {eq.module} {eq.function}: {eq.before!r} -> {eq.after!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help="e.g. wxmp/token.py (default: all in tools/mutation.toml)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel mutant runs (default 2)")
    parser.add_argument("--fail-under", type=float, default=90.0, help="exit 1 below this score (default 90)")
    parser.add_argument("--keep", action="store_true", help="keep the copy (mutmut show/browse work there)")
    parser.add_argument("--diff", action="store_true", help="print full diffs of survivors")
    parser.add_argument("--suggest", action="store_true", help="print an [[equivalent]] block per survivor")
    args = parser.parse_args(argv)

    config = load_config()
    modules = [str(Path(m).as_posix()) for m in args.modules] or list(config.modules)
    unknown = [m for m in modules if m not in config.modules]
    if unknown:
        parser.error(f"not in tools/mutation.toml [modules]: {', '.join(unknown)}")

    results = []
    for module in modules:
        mutants, work = run_module(module, config.modules[module], args.jobs, args.keep)
        result = ModuleResult(module, mutants)
        stale = match_equivalents(result, [e for e in config.equivalents if e.module == module])
        report(result, stale, args.diff, args.suggest)
        results.append(result)
        if args.keep:
            print(f"\n   kept {work}: cd there and run `python -m mutmut show NAME`")

    print("\n| module | mutants | equivalent | killed | survived | no tests | score |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        no_tests = sum(m.status == "no tests" for m in r.survivors)
        print(
            f"| {r.module} | {len(r.mutants)} | {len(r.equivalent)} | {len(r.killed)} "
            f"| {len(r.survivors) - no_tests} | {no_tests} | {r.score:.1f}% |"
        )
    return 1 if any(r.score < args.fail_under for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
