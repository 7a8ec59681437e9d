"""No function or method in ``src/gannorm`` is longer than 60 lines.

A function's length is the number of lines its body spans, without the docstring: from the first line of
the first statement after the docstring to the last line of the last statement, blank lines and comments
between them included. The ``def`` line with its signature, the decorators and the docstring do not count
(a function whose body is only a docstring has length 0). Nested functions count in their enclosing
function's body and are checked on their own as well. A longer function is split by extracting a helper.
The docstring is left out on purpose: a public function documents Args/Returns/Example (as torch does), which
can take a screen by itself, and the rule is about the code one has to read at once.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "gannorm"
MAX_LINES = 60


def body_length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines spanned by ``node``'s body without its docstring."""
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    if not body:
        return 0
    end = body[-1].end_lineno
    assert end is not None
    return end - body[0].lineno + 1


def functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_body_length_counts_the_body_without_the_docstring():
    source = textwrap.dedent('''
        @decorator
        def f(a,
              b):
            """Doc.

            More doc.
            """
            x = 1

            # a comment
            return (x +
                    a)

        def only_doc():
            """Nothing else."""

        class C:
            async def m(self):
                pass
    ''')
    lengths = {n.name: body_length(n) for n in functions(ast.parse(source))}
    assert lengths == {"f": 5, "only_doc": 0, "m": 1}


def test_no_function_in_src_is_longer_than_60_lines():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50, f"expected the package sources under {SRC}"
    too_long = [f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name} ({body_length(node)} lines)"
                for path in files for node in functions(ast.parse(path.read_text(encoding="utf-8")))
                if body_length(node) > MAX_LINES]
    assert not too_long, f"functions longer than {MAX_LINES} lines (extract a helper): " + "; ".join(too_long)
