"""bash completion of model references across the colon.

bash splits the word being completed at every character of COMP_WORDBREAKS, which holds ':'. So for
`zoo evaluate mnist-mlp:<TAB>` Typer's bash script hands over the words `mnist-mlp` and `:`, the reference is
never seen whole, and nothing completes. Here the words are joined again before the completion functions see
them, and each answer loses the part up to the word's last colon, which bash keeps on the line (what
bash-completion's `__ltrim_colon_completions` does for its own scripts).
"""

from __future__ import annotations

from typer._click.shell_completion import CompletionItem, add_completion_class
from typer._completion_classes import BashComplete

BREAK = ":"


def join_colon_words(words: list[str]) -> tuple[list[str], int]:
    """`words` with every `:` joined to its neighbours (`a`, `:`, `b` -> `a:b`), and how many words that removed."""
    joined: list[str] = []
    glue = False
    for word in words:
        if word == BREAK and joined:
            joined[-1] += BREAK
            glue = True
        elif glue:
            joined[-1] += word
            glue = False
        else:
            joined.append(word)
    return joined, len(words) - len(joined)


class ColonBashComplete(BashComplete):
    """Typer's bash completion, with `MODEL:VERSION` references completed across the colon."""

    _prefix = ""  # the part of the word under the cursor that bash keeps: up to its last colon

    def get_completion_args(self) -> tuple[list[str], str]:
        args, incomplete = super().get_completion_args()
        words, _ = join_colon_words([*args, incomplete])
        self._prefix = words[-1].rpartition(BREAK)[0] + BREAK if BREAK in words[-1] else ""
        return words[:-1], words[-1]

    def format_completion(self, item: CompletionItem) -> str:
        value = str(item.value)
        return value[len(self._prefix):] if self._prefix and value.startswith(self._prefix) else value


def install() -> None:
    """Use ColonBashComplete for bash; called once Typer has registered its own classes."""
    add_completion_class(ColonBashComplete, BashComplete.name)
