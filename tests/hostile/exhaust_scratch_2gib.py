"""Hostile: writes 2 GiB into whatever it may write (working directory, HOME, TMPDIR, /tmp,
/dev/shm: RAM where they are tmpfs) in 128 MiB files, then reports through every check's reason how
much it managed to write ("scratch-written=<MiB> MiB"), so that a test can see whether the space
was capped; it deletes what it wrote outside its working directory (a grader without a sandbox
shares /tmp with the machine); honest score: 0 (forward always raises)."""
import os
import tempfile

from torch import nn

import toolkit

CHUNK = b"\0" * (128 << 20)


def fill(limit: int = 2048) -> int:
    written, outside = 0, []
    folders = [os.getcwd(), os.path.expanduser("~"), tempfile.gettempdir(), "/tmp", "/dev/shm"]
    for folder in dict.fromkeys(os.path.realpath(f) for f in folders):
        for i in range(limit // 128):
            if written >= limit:
                break
            path = os.path.join(folder, f"fill{i:03d}.bin")
            if folder != os.path.realpath(os.getcwd()):
                outside.append(path)
            try:
                with open(path, "wb") as f:
                    f.write(CHUNK)
            except OSError:  # full, read-only, or over the file-size limit
                break
            written += 128
    for path in outside:
        try:
            os.unlink(path)
        except OSError:
            pass
    return written


WRITTEN = fill()


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        raise ValueError(f"scratch-written={WRITTEN} MiB")


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
