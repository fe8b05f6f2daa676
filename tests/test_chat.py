"""``toolkit chat`` says what it does: a flag it cannot use, an empty reply, a mask that changes nothing."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chat(*args, input="What is the capital of France ?\n") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit.cli", "chat", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, input=input, timeout=300)


def test_top_p_without_a_sampler_plugin_is_refused_in_one_sentence():
    """The toolkit's own sampler has no top-p: the flag used to be ignored silently."""
    out = chat("-p", "0.9")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("error: --top-p needs a sampler plugin (no submission was given): the toolkit's "
                                  "own sampler has no top-p; give a submission with toolkit_sample")
    out = chat(ROOT / "solutions" / "sft_mask.py", "-p", "0.9")
    assert out.returncode == 2 and "solutions/sft_mask.py provides none" in out.stderr


def test_an_empty_reply_is_shown_as_such_with_its_stop_token(tmp_path):
    """A sampler that picks <|end|> at once: the reply was a blank line before."""
    from toolkit.pipeline import Pipeline

    end = Pipeline(log=lambda m: None).tokenizer.special_tokens["<|end|>"]
    plugin = tmp_path / "ends.py"
    plugin.write_text("import torch\nimport toolkit\n\n\n@toolkit.hookimpl\n"
                      "def toolkit_sample(logits, temperature, top_k, top_p, generator):\n"
                      f"    return torch.full((logits.shape[0],), {end})\n")
    out = chat(plugin, "-p", "0.5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(empty reply: the model wrote <|end|> first)"


def test_a_mask_with_the_baselines_values_says_it_uses_the_baselines_chat_model(tmp_path):
    """Bob's mask gives the baseline's values: his chat model is the one that ships, and the line says why
    (it said 'loaded shipped with the toolkit', as if his mask had been ignored), without this machine's paths."""
    plugin = tmp_path / "bob.py"
    plugin.write_text("import toolkit\nfrom toolkit.baselines import BaselineSFTMask\n\n\n@toolkit.hookimpl\n"
                      "def toolkit_sft_mask(tokens, special_tokens):\n"
                      "    return BaselineSFTMask().toolkit_sft_mask(tokens, special_tokens)\n")
    out = chat(plugin, "-t", "0")
    assert out.returncode == 0, out.stderr
    assert "your mask gives the same values as the baseline's: using its chat model" in out.stderr
    assert str(ROOT) not in out.stderr and "/" not in out.stderr.replace("Ctrl-D", "")
    assert out.stdout.strip() == "The capital of France is Paris ."
