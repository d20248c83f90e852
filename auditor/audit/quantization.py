"""Quantization modes: their names, `auto` resolved once, and the bitsandbytes config for each.

The name is what the audit key records (`audits.quantization`): `nf4` and `int8` are
bitsandbytes' 4-bit and 8-bit loading, `none` the weights as they are, and `pre-<method>` a repo
that ships quantized weights (GPTQ, AWQ, bitsandbytes), which load the repo's own way. `auto` never
reaches the store: `resolve` turns it into a mode once, when the audit's settings are resolved.
Nothing heavy is imported here until a config is built, so the configuration can validate names.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

#: The modes a user may ask for (`[audit] quantization`, `--quant`).
Quantization = Literal["auto", "nf4", "int8", "none"]
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
PREQUANTIZED_PREFIX = "pre-"


def resolve(setting: str, device: str) -> str:
    """The mode `auto` means on `device`: nf4 on a GPU, none on a CPU; any other setting stands.

    >>> resolve("auto", "cuda"), resolve("auto", "cpu"), resolve("int8", "cpu")
    ('nf4', 'none', 'int8')
    """
    if setting == "auto":
        return "nf4" if device == "cuda" else "none"
    return setting


def prequantized(method: str) -> str:
    """The recorded mode of a repo that ships weights quantized with `method`.

    >>> prequantized("gptq")
    'pre-gptq'
    """
    return f"{PREQUANTIZED_PREFIX}{method}"


def bitsandbytes_config(quantization: str, compute_dtype: Any) -> Any:
    """The BitsAndBytesConfig for a mode: None for `none` and for a repo's own quantization
    (`pre-<method>`: transformers reads it from the repo's config.json)."""
    if quantization == "none" or quantization.startswith(PREQUANTIZED_PREFIX):
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"unknown quantization {quantization!r}")
