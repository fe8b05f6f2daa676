"""Hostile: the mask raises an exception whose text is terminal escapes (CSI, OSC), NUL, DEL, C1
controls, right-to-left overrides and zero-width characters around markup, so that a page or a
terminal shows something other than what the text says; honest score: 0."""
import toolkit

TEXT = ("\x1b[2J\x1b]0;pwned\x07\x00\x7f\x9b31m\u202egnp.exe\u202c\u2066\u200b"
        '<b class="hostile-xss">bold</b>\u2069\x1b[0m')


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    raise ValueError(TEXT * 3)
